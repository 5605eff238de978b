//! Collaboration rooms: who is present, joining under `rooms.authorize`, and member broadcasts.
//!
//! A room `x` is the channel `room:x`. Membership is per connection, presence per user: a user with
//! three tabs is present once, `user_joined` goes out when their first tab joins and `user_left`
//! when their last one leaves. Presence and member broadcasts are relayed to this process's members
//! directly (unsequenced, never replayed); events published to `room:x` through the broker reach
//! members like any channel's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request};
use serde_json::{Value, json};

use super::access::ROOM_PREFIX;
use crate::auth::Credentials;
use crate::body::empty;
use crate::broker::{ConnId, Event, Subscriber};
use crate::events::envelope::Framed;
use crate::events::template::Vars;
use crate::state::{Settings, Shared};

#[derive(Debug, Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Vec<Member>>>,
}

#[derive(Debug, Clone)]
struct Member {
    conn: ConnId,
    /// The presence id: the user id, or `anon:<client_id>` for anonymous callers.
    user: Arc<str>,
    sub: Subscriber,
}

impl Rooms {
    /// Adds the connection and returns the users present (distinct, in join order).
    pub fn join(&self, room: &str, sub: &Subscriber, user: Arc<str>) -> Vec<Arc<str>> {
        let mut rooms = self.lock();
        let members = rooms.entry(room.to_owned()).or_default();
        if !members.iter().any(|m| m.conn == sub.id()) {
            let first_tab = !members.iter().any(|m| m.user == user);
            if first_tab {
                let frame = json!({"type": "user_joined", "room": room, "user": {"id": &*user}});
                relay(members, room, None, &frame);
            }
            members.push(Member {
                conn: sub.id(),
                user,
                sub: sub.clone(),
            });
        }
        let mut users: Vec<Arc<str>> = Vec::new();
        for m in members.iter() {
            if !users.contains(&m.user) {
                users.push(Arc::clone(&m.user));
            }
        }
        users
    }

    pub fn leave(&self, room: &str, conn: ConnId) {
        let mut rooms = self.lock();
        let Some(members) = rooms.get_mut(room) else {
            return;
        };
        let Some(at) = members.iter().position(|m| m.conn == conn) else {
            return;
        };
        let gone = members.remove(at);
        if !members.iter().any(|m| m.user == gone.user) {
            let frame = json!({"type": "user_left", "room": room, "user_id": &*gone.user});
            relay(members, room, None, &frame);
        }
        if members.is_empty() {
            rooms.remove(room);
        }
    }

    /// Relays a member's frame to the other members; false when `from` is not a member.
    pub fn broadcast(&self, room: &str, from: ConnId, event_type: &str, data: Value) -> bool {
        let rooms = self.lock();
        let Some(members) = rooms.get(room) else {
            return false;
        };
        let Some(sender) = members.iter().find(|m| m.conn == from) else {
            return false;
        };
        let frame =
            json!({"type": event_type, "room": room, "user": {"id": &*sender.user}, "data": data});
        relay(members, room, Some(from), &frame);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Member>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Offers one frame to every member but `except`; `seq: 0` marks it unsequenced (never deduped).
fn relay(members: &[Member], room: &str, except: Option<ConnId>, frame: &Value) {
    let event = Arc::new(Event {
        channel: Arc::from(format!("{ROOM_PREFIX}{room}")),
        seq: 0,
        event_type: Arc::from(frame["type"].as_str().unwrap_or("room")),
        frame: Framed::from_text(&frame.to_string()),
        origin_client: None,
        actor: None,
        published_at: std::time::Instant::now(),
    });
    let mut fan = crate::broker::FanOut::new();
    for m in members.iter().filter(|m| Some(m.conn) != except) {
        fan.offer(&m.sub, &event);
    }
}

/// The presence snapshot a joining member receives.
pub fn presence_frame(room: &str, users: &[Arc<str>]) -> String {
    let users: Vec<Value> = users.iter().map(|u| json!({"id": &**u})).collect();
    json!({"type": "presence", "room": room, "users": users}).to_string()
}

struct RoomVars<'a> {
    caps: regex::Captures<'a>,
    user: Option<&'a str>,
}

impl Vars for RoomVars<'_> {
    fn capture(&self, name: &str) -> Option<&str> {
        self.caps.name(name).map(|m| m.as_str())
    }
    fn body_field(&self, _path: &[String]) -> Option<String> {
        None
    }
    fn user(&self) -> Option<&str> {
        self.user
    }
}

/// Asks the API whether this caller may see the room: the first `rooms.authorize` rule whose
/// pattern matches names an API path, fetched with the caller's own credentials (2xx = yes).
/// A room no rule matches is open to every caller the socket's authentication admitted.
pub async fn authorize(
    shared: &Shared,
    settings: &Settings,
    room: &str,
    user: Option<&str>,
    creds: &Credentials,
) -> Result<(), String> {
    let cfg = &settings.config;
    let Some((rule, caps)) = cfg
        .rooms
        .authorize
        .iter()
        .find_map(|r| r.room.captures(room).map(|c| (r, c)))
    else {
        return Ok(());
    };
    let refused = || format!("not allowed to join room {room:?}");
    let Some(path) = rule.path.render(&RoomVars { caps, user }) else {
        return Err(refused());
    };
    let uri = format!(
        "http://{}{}{}",
        cfg.upstream.authority, cfg.upstream.base_path, path
    );
    let mut req = Request::new(empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri.parse().map_err(|_| refused())?;
    creds.apply(req.headers_mut());
    match shared
        .upstream
        .send(req, cfg.upstream.request_timeout)
        .await
    {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(_) => Err(refused()),
        Err(e) => Err(format!("cannot check access to room {room:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExcludeOrigin;

    fn member(client: &str) -> (Subscriber, tokio::sync::mpsc::Receiver<Arc<Event>>) {
        Subscriber::new(Arc::from(client), None, ExcludeOrigin::None, 16)
    }

    fn next(rx: &mut tokio::sync::mpsc::Receiver<Arc<Event>>) -> Option<Value> {
        rx.try_recv()
            .ok()
            .map(|e| serde_json::from_str(e.frame.as_str()).unwrap())
    }

    #[test]
    fn a_user_with_several_tabs_is_present_once() {
        let rooms = Rooms::default();
        let (alice1, mut a1) = member("a1");
        let (alice2, _a2) = member("a2");
        let (bob, mut b) = member("b");
        rooms.join("doc", &bob, Arc::from("8"));
        rooms.join("doc", &alice1, Arc::from("7"));
        assert_eq!(next(&mut b).unwrap()["type"], "user_joined");
        let users = rooms.join("doc", &alice2, Arc::from("7"));
        assert_eq!(users.iter().map(|u| &**u).collect::<Vec<_>>(), ["8", "7"]);
        assert!(next(&mut b).is_none(), "a second tab is not a new user");
        rooms.leave("doc", alice1.id());
        assert!(next(&mut b).is_none(), "alice still has a tab open");
        rooms.leave("doc", alice2.id());
        assert_eq!(
            next(&mut b).unwrap(),
            json!({"type":"user_left","room":"doc","user_id":"7"})
        );
        assert!(next(&mut a1).is_none());
    }

    #[test]
    fn broadcast_skips_the_sender_and_needs_membership() {
        let rooms = Rooms::default();
        let (a, mut a_rx) = member("a");
        let (b, mut b_rx) = member("b");
        let (outsider, _o) = member("o");
        rooms.join("doc", &a, Arc::from("7"));
        rooms.join("doc", &b, Arc::from("8"));
        let _ = next(&mut a_rx);
        assert!(rooms.broadcast("doc", a.id(), "document_updated", json!({"v": 1})));
        assert_eq!(
            next(&mut b_rx).unwrap(),
            json!({"type":"document_updated","room":"doc","user":{"id":"7"},"data":{"v":1}})
        );
        assert!(next(&mut a_rx).is_none());
        assert!(!rooms.broadcast("doc", outsider.id(), "x", Value::Null));
    }
}
