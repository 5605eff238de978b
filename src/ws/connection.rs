//! One WebSocket connection: a single `select!` loop over shutdown, cut-off, queued events, client
//! frames and the ping timer.
//!
//! Generic over any `Sink`/`Stream` of tungstenite messages so it can be driven by channels in tests.
//! Writes are bounded by a timeout: a peer that stops reading is cut off, never waited on forever.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::outlet::Outlet;
use super::protocol::{self, ClientOp, ErrorCode, ProtocolError, ServerMsg};
use super::{access, rooms};
use crate::auth::Credentials;
use crate::broker::{Event, Resume, Subscriber};
use crate::state::{Settings, Shared};

/// A peer that accepts nothing for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Queued events written per flush: batches frames without starving reads.
const WRITE_BATCH: usize = 64;

/// Who is on the socket and what it starts subscribed to.
#[derive(Debug, Clone)]
pub struct Session {
    pub client_id: Arc<str>,
    pub user: Option<Arc<str>>,
    /// Channels subscribed on connect (the notifications socket's `user:{id}`).
    pub auto_channels: Vec<String>,
    /// What the caller presented, replayed to the API to authorize room joins.
    pub creds: Credentials,
    /// Set on a room socket (`room_path`): its room, joined on connect; bare `{"type":…}` frames
    /// are broadcasts to it.
    pub room: Option<String>,
}

/// What woke the socket's loop.
enum Woke {
    Shutdown,
    CutOff,
    /// The outlet's pending bytes went out (or could not).
    Drained(std::io::Result<()>),
    Event(Arc<Event>),
    Frame(Option<Result<Message, WsError>>),
    Ping,
}

/// Why the loop ended, and the close frame to send if any.
enum End {
    Quiet,
    Close(CloseCode, &'static str),
    /// A room join the API refused: close 4403 with the reason, so the browser can show it.
    Refused(String),
}

struct Conn<'a, S> {
    ws: S,
    shared: &'a Shared,
    /// The same, owned, for work that must outlive a borrow of `self` (room authorization).
    shared_owned: Arc<Shared>,
    sub: Subscriber,
    session: Session,
    /// The write side shared with the fan-out; holds the subscribed channels and the last `seq`
    /// delivered on each (drops replay/live overlap).
    outlet: Arc<Outlet>,
    max_subscriptions: usize,
    settings: Arc<Settings>,
}

/// `outlet` is the socket's (`ws::outlet`), or one without a socket, which never writes directly.
pub async fn serve<S>(ws: S, shared: Arc<Shared>, session: Session, outlet: Arc<Outlet>)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let settings = shared.settings();
    let cfg = &settings.config;
    let (sub, mut queue) = Subscriber::with_outlet(
        Arc::clone(&session.client_id),
        session.user.clone(),
        cfg.events.exclude_origin,
        cfg.limits.send_queue,
        Some(Arc::clone(&outlet)),
    );
    let ping_every = cfg.websocket.ping_interval;
    let mut conn = Conn {
        ws,
        shared: &shared,
        shared_owned: Arc::clone(&shared),
        sub,
        session,
        outlet,
        max_subscriptions: cfg.limits.max_subscriptions,
        settings: Arc::clone(&settings),
    };
    drop(settings);
    shared.metrics.ws_opened();
    let end = conn.run(&mut queue, ping_every).await;
    let close = match end {
        End::Quiet => None,
        End::Close(code, reason) => Some((code, Utf8Bytes::from_static(reason))),
        End::Refused(reason) => Some((CloseCode::Library(4403), Utf8Bytes::from(reason))),
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            conn.ws.send(Message::Close(Some(frame))),
        )
        .await;
    }
    conn.outlet.shut();
    let channels: Vec<String> = conn
        .outlet
        .subs(|subs| subs.drain().map(|(c, _)| c).collect());
    for channel in &channels {
        shared.broker.unsubscribe(channel, conn.sub.id());
        if let Some(room) = channel.strip_prefix(access::ROOM_PREFIX) {
            shared.rooms.leave(room, conn.sub.id());
        }
    }
    shared.metrics.ws_closed();
}

impl<S> Conn<'_, S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    async fn run(
        &mut self,
        queue: &mut tokio::sync::mpsc::Receiver<Arc<Event>>,
        ping_every: Duration,
    ) -> End {
        let welcome = ServerMsg::Welcome {
            client_id: &self.session.client_id,
            user: self.session.user.as_deref(),
        }
        .to_json();
        if self.send(welcome).await.is_err() {
            return End::Quiet;
        }
        for channel in std::mem::take(&mut self.session.auto_channels) {
            if let Err(end) = self.subscribe(channel, None).await {
                return end;
            }
        }
        if let Some(room) = self.session.room.clone() {
            let channel = format!("{}{room}", access::ROOM_PREFIX);
            if let Err(refused) = self.join_room(&room).await {
                return End::Refused(refused);
            }
            if let Err(end) = self.subscribe(channel, None).await {
                return end;
            }
        }
        let mut shutdown = self.shared.shutdown_signal();
        if *shutdown.borrow() {
            return End::Close(CloseCode::Away, "server shutting down");
        }
        let sub = self.sub.clone();
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Created once: re-registering a waiter on every turn of the loop cost a lock per event.
        let cut_off = sub.cut_off_signal();
        let shutting_down = shutdown.changed();
        tokio::pin!(cut_off, shutting_down);
        let outlet = Arc::clone(&self.outlet);
        loop {
            // While this task waits with nothing queued, the fan-out writes events itself; once
            // woken, it holds the fan-out off before it writes anything.
            outlet.open(|| queue.is_empty());
            let woke = tokio::select! {
                biased;
                _ = &mut shutting_down => Woke::Shutdown,
                _ = &mut cut_off => Woke::CutOff,
                drained = std::future::poll_fn(|cx| outlet.poll_drained(cx)) => Woke::Drained(drained),
                Some(event) = queue.recv() => Woke::Event(event),
                frame = self.ws.next() => Woke::Frame(frame),
                _ = ping.tick() => Woke::Ping,
            };
            outlet.hold();
            match woke {
                Woke::Shutdown => return End::Close(CloseCode::Away, "server shutting down"),
                Woke::CutOff => {
                    let why = sub.cut_off_reason();
                    self.shared.metrics.ws_dropped(why.label());
                    return End::Close(CloseCode::Again, why.close_reason());
                }
                Woke::Drained(Ok(())) => {}
                Woke::Drained(Err(_)) => return End::Quiet,
                Woke::Event(event) => {
                    if let Err(end) = self.deliver_batch(event, queue).await {
                        return end;
                    }
                }
                Woke::Frame(frame) => {
                    last_heard = Instant::now();
                    match frame {
                        None | Some(Ok(Message::Close(_))) => return End::Quiet,
                        Some(Ok(Message::Text(text))) => {
                            if let Err(end) = self.on_text(&text).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let err = ProtocolError::new(
                                ErrorCode::BadRequest,
                                "binary frames are not supported; send JSON text",
                                None,
                            );
                            if let Err(end) = self.send_error(&err).await {
                                return end;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(WsError::Capacity(_))) => {
                            self.shared.metrics.ws_dropped("message_too_big");
                            return End::Close(CloseCode::Size, "message too big");
                        }
                        Some(Err(_)) => return End::Quiet,
                    }
                }
                Woke::Ping => {
                    if last_heard.elapsed() > ping_every * 2 + Duration::from_secs(1) {
                        self.shared.metrics.ws_dropped("ping_timeout");
                        return End::Close(CloseCode::Away, "ping timeout");
                    }
                    if self.write(Message::Ping(Default::default())).await.is_err() {
                        return End::Quiet;
                    }
                }
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        if let Some((event_type, data)) = self.room_frame(text) {
            let channel = format!(
                "{}{}",
                access::ROOM_PREFIX,
                self.session.room.as_deref().unwrap_or("")
            );
            return self.publish(channel, event_type, data).await;
        }
        match protocol::parse(text) {
            Ok(ClientOp::Subscribe { channel, since }) => self.subscribe(channel, since).await,
            Ok(ClientOp::Unsubscribe { channel }) => self.unsubscribe(channel).await,
            Ok(ClientOp::Publish {
                channel,
                event_type,
                data,
            }) => self.publish(channel, event_type, data).await,
            Ok(ClientOp::Ping) => self.send(ServerMsg::Pong.to_json()).await,
            Err(err) => self.send_error(&err).await,
        }
    }

    async fn subscribe(&mut self, channel: String, since: Option<u64>) -> Result<(), End> {
        let user = self.session.user.as_deref();
        let user_prefix = &self.settings.config.channels.user_prefix;
        if let Err(err) = access::may_read(&channel, user, user_prefix, "subscribe") {
            return self.send_error(&err).await;
        }
        let room = channel.strip_prefix(access::ROOM_PREFIX).map(str::to_owned);
        if let Some(room) = &room
            && self.session.room.as_deref() != Some(room.as_str())
            && let Err(refused) = self.join_room(room).await
        {
            let err = ProtocolError::new(ErrorCode::Forbidden, refused, Some("subscribe"));
            return self.send_error(&err).await;
        }
        let at_limit = self
            .outlet
            .subs(|subs| !subs.contains_key(&channel) && subs.len() >= self.max_subscriptions);
        if at_limit {
            let err = ProtocolError::new(
                ErrorCode::TooMany,
                format!(
                    "at most {} subscriptions per connection",
                    self.max_subscriptions
                ),
                Some("subscribe"),
            );
            return self.send_error(&err).await;
        }
        let outcome = match self
            .shared
            .broker
            .subscribe(&channel, since, &self.sub)
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                let err =
                    ProtocolError::new(ErrorCode::Unavailable, e.to_string(), Some("subscribe"));
                return self.send_error(&err).await;
            }
        };
        let recovered = outcome.resume == Resume::Recovered;
        let last = match (outcome.resume, since) {
            (Resume::Recovered, Some(since)) => since,
            _ => outcome.seq,
        };
        self.outlet.subs(|subs| subs.insert(channel.clone(), last));
        let msg = ServerMsg::Subscribed {
            channel: &channel,
            seq: outcome.seq,
            recovered,
        };
        self.send(msg.to_json()).await?;
        if outcome.resume == Resume::Reset {
            self.send(ServerMsg::Reset { channel: &channel }.to_json())
                .await?;
        }
        for event in &outcome.replay {
            self.feed_event(event).await?;
        }
        if let Some(room) = &room {
            let users = self.shared.rooms.join(room, &self.sub, self.presence_id());
            self.send(rooms::presence_frame(room, &users)).await?;
        }
        self.flush().await
    }

    /// On a room socket, a bare `{"type":…,"data":…}` frame (no `op`) is a broadcast to the room.
    fn room_frame(&self, text: &str) -> Option<(String, serde_json::Value)> {
        self.session.room.as_ref()?;
        let serde_json::Value::Object(mut map) = serde_json::from_str(text).ok()? else {
            return None;
        };
        if map.contains_key("op") {
            return None;
        }
        let event_type = match map.remove("type")? {
            serde_json::Value::String(t)
                if !t.is_empty() && t.len() <= protocol::MAX_CHANNEL_LEN =>
            {
                t
            }
            _ => return None,
        };
        Some((
            event_type,
            map.remove("data").unwrap_or(serde_json::Value::Null),
        ))
    }

    /// Checks `rooms.authorize` for this caller; joining itself happens once subscribed.
    /// (Borrows fields, not `self`: the socket inside is not `Sync`, and this awaits.)
    fn join_room(
        &self,
        room: &str,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let shared = Arc::clone(&self.shared_owned);
        let settings = Arc::clone(&self.settings);
        let room = room.to_owned();
        let user = self.session.user.clone();
        let creds = self.session.creds.clone();
        async move { rooms::authorize(&shared, &settings, &room, user.as_deref(), &creds).await }
    }

    /// Presence is per user; an anonymous caller is present as its connection.
    fn presence_id(&self) -> Arc<str> {
        match &self.session.user {
            Some(user) => Arc::clone(user),
            None => Arc::from(format!("anon:{}", self.session.client_id)),
        }
    }

    async fn unsubscribe(&mut self, channel: String) -> Result<(), End> {
        if self.outlet.subs(|subs| subs.remove(&channel)).is_none() {
            let err = ProtocolError::new(
                ErrorCode::NotFound,
                format!("not subscribed to {channel:?}"),
                Some("unsubscribe"),
            );
            return self.send_error(&err).await;
        }
        self.shared.broker.unsubscribe(&channel, self.sub.id());
        if let Some(room) = channel.strip_prefix(access::ROOM_PREFIX) {
            self.shared.rooms.leave(room, self.sub.id());
        }
        self.send(ServerMsg::Unsubscribed { channel: &channel }.to_json())
            .await
    }

    /// Client broadcast: only into a room this connection has joined, only when rooms allow it.
    /// Relayed to the other members as it is, never echoed and never stored.
    async fn publish(
        &mut self,
        channel: String,
        event_type: String,
        data: serde_json::Value,
    ) -> Result<(), End> {
        let room = channel.strip_prefix(access::ROOM_PREFIX);
        let Some(room) = room.filter(|_| self.settings.config.rooms.client_publish) else {
            let err = ProtocolError::new(
                ErrorCode::Forbidden,
                "clients may publish only to a joined room:… channel, when rooms.client_publish is true",
                Some("publish"),
            );
            return self.send_error(&err).await;
        };
        if !self
            .shared
            .rooms
            .broadcast(room, self.sub.id(), &event_type, data)
        {
            let err = ProtocolError::new(
                ErrorCode::Forbidden,
                format!("join {channel:?} before publishing to it"),
                Some("publish"),
            );
            return self.send_error(&err).await;
        }
        Ok(())
    }

    /// Writes `first` and whatever else is already queued, then flushes once.
    async fn deliver_batch(
        &mut self,
        first: Arc<Event>,
        queue: &mut tokio::sync::mpsc::Receiver<Arc<Event>>,
    ) -> Result<(), End> {
        self.feed_event(&first).await?;
        for _ in 1..WRITE_BATCH {
            match queue.try_recv() {
                Ok(event) => self.feed_event(&event).await?,
                Err(_) => break,
            }
        }
        self.flush().await
    }

    async fn feed_event(&mut self, event: &Arc<Event>) -> Result<(), End> {
        let fresh = self.outlet.take_fresh(event);
        if !fresh || (event.seq != 0 && self.sub.excludes(event)) {
            return Ok(());
        }
        timed(self.shared, self.ws.feed(Message::Text(event.frame.utf8()))).await?;
        self.shared
            .metrics
            .observe_delivery(event.published_at.elapsed());
        Ok(())
    }

    async fn send_error(&mut self, err: &ProtocolError) -> Result<(), End> {
        self.send(ServerMsg::from(err).to_json()).await
    }

    async fn send(&mut self, json: String) -> Result<(), End> {
        self.write(Message::Text(json.into())).await
    }

    async fn write(&mut self, msg: Message) -> Result<(), End> {
        timed(self.shared, self.ws.send(msg)).await
    }

    async fn flush(&mut self) -> Result<(), End> {
        timed(self.shared, self.ws.flush()).await
    }
}

/// Bounds a write: a peer that stops reading is dropped instead of stalling this task forever.
///
/// Most writes finish at once (the socket has room), so the first poll runs without a timer: a
/// fan-out to thousands of sockets then sets up and tears down no timer per frame.
async fn timed(
    shared: &Shared,
    io: impl std::future::Future<Output = Result<(), WsError>>,
) -> Result<(), End> {
    let mut io = std::pin::pin!(io);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(io.as_mut().poll(cx))).await;
    let outcome = match first {
        std::task::Poll::Ready(done) => Ok(done),
        std::task::Poll::Pending => tokio::time::timeout(WRITE_TIMEOUT, io).await,
    };
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Quiet),
        Err(_) => {
            shared.metrics.ws_dropped("write_timeout");
            Err(End::Quiet)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::metrics::Metrics;
    use crate::broker::MemoryBroker;
    use crate::config::Config;
    use crate::state::Settings;

    fn shared() -> Shared {
        let config = Config::default();
        let broker = MemoryBroker::new(config.history);
        let settings = Settings::new(config).expect("default settings");
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        Shared::new(settings, broker, Arc::new(Metrics::new()), shutdown)
    }

    fn write_timeouts(shared: &Shared) -> bool {
        shared
            .metrics
            .encode()
            .contains(r#"syncgate_ws_dropped_total{reason="write_timeout"} 1"#)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_ends_the_socket_after_the_write_timeout() {
        let shared = shared();
        let started = Instant::now();
        let end = tokio::time::timeout(WRITE_TIMEOUT * 2, timed(&shared, std::future::pending()))
            .await
            .expect("timed() must give up on its own");
        assert!(matches!(end, Err(End::Quiet)));
        assert!(started.elapsed() >= WRITE_TIMEOUT);
        assert!(write_timeouts(&shared));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_but_finishes_in_time_succeeds() {
        let shared = shared();
        let slow = async {
            tokio::time::sleep(WRITE_TIMEOUT / 2).await;
            Ok(())
        };
        assert!(timed(&shared, slow).await.is_ok());
        assert!(!write_timeouts(&shared));
    }

    #[tokio::test]
    async fn a_failed_write_ends_the_socket_quietly() {
        let shared = shared();
        let failed = async { Err(WsError::ConnectionClosed) };
        assert!(matches!(timed(&shared, failed).await, Err(End::Quiet)));
    }
}
