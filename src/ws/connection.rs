//! One WebSocket connection: a single `select!` loop over shutdown, cut-off, queued events, client
//! frames and the ping timer.
//!
//! Generic over any `Sink`/`Stream` of tungstenite messages so it can be driven by channels in tests.
//! Writes are bounded by a timeout: a peer that stops reading is cut off, never waited on forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::access;
use super::protocol::{self, ClientOp, ErrorCode, ProtocolError, ServerMsg};
use crate::broker::{Event, Resume, Subscriber};
use crate::events::{EventDraft, now_millis};
use crate::state::Shared;

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
}

/// Why the loop ended, and the close frame to send if any.
enum End {
    Quiet,
    Close(CloseCode, &'static str),
}

struct Conn<'a, S> {
    ws: S,
    shared: &'a Shared,
    sub: Subscriber,
    session: Session,
    /// Subscribed channels and the last `seq` delivered on each (drops replay/live overlap).
    subs: HashMap<String, u64>,
    max_subscriptions: usize,
    user_prefix: String,
    client_publish: bool,
}

pub async fn serve<S>(ws: S, shared: Arc<Shared>, session: Session)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let settings = shared.settings();
    let cfg = &settings.config;
    let (sub, mut queue) = Subscriber::new(
        Arc::clone(&session.client_id),
        session.user.clone(),
        cfg.events.exclude_origin,
        cfg.limits.send_queue,
    );
    let ping_every = cfg.websocket.ping_interval;
    let mut conn = Conn {
        ws,
        shared: &shared,
        sub,
        session,
        subs: HashMap::new(),
        max_subscriptions: cfg.limits.max_subscriptions,
        user_prefix: cfg.channels.user_prefix.clone(),
        client_publish: cfg.rooms.client_publish,
    };
    drop(settings);
    shared.metrics.ws_opened();
    let end = conn.run(&mut queue, ping_every).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            conn.ws.send(Message::Close(Some(frame))),
        )
        .await;
    }
    for channel in conn.subs.keys() {
        shared.broker.unsubscribe(channel, conn.sub.id());
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
        let mut shutdown = self.shared.shutdown_signal();
        if *shutdown.borrow() {
            return End::Close(CloseCode::Away, "server shutting down");
        }
        let sub = self.sub.clone();
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return End::Close(CloseCode::Away, "server shutting down"),
                _ = sub.cut_off_signal() => {
                    self.shared.metrics.ws_dropped("slow_consumer");
                    return End::Close(CloseCode::Again, "send queue full; reconnect and resume");
                }
                Some(event) = queue.recv() => {
                    if let Err(end) = self.deliver_batch(event, queue).await {
                        return end;
                    }
                }
                frame = self.ws.next() => {
                    last_heard = Instant::now();
                    match frame {
                        None | Some(Ok(Message::Close(_))) => return End::Quiet,
                        Some(Ok(Message::Text(text))) => {
                            if let Err(end) = self.on_text(&text).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let err = ProtocolError::new(ErrorCode::BadRequest, "binary frames are not supported; send JSON text", None);
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
                _ = ping.tick() => {
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
        if let Err(err) = access::may_read(&channel, user, &self.user_prefix, "subscribe") {
            return self.send_error(&err).await;
        }
        if !self.subs.contains_key(&channel) && self.subs.len() >= self.max_subscriptions {
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
        self.subs.insert(channel.clone(), last);
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
        self.flush().await
    }

    async fn unsubscribe(&mut self, channel: String) -> Result<(), End> {
        if self.subs.remove(&channel).is_none() {
            let err = ProtocolError::new(
                ErrorCode::NotFound,
                format!("not subscribed to {channel:?}"),
                Some("unsubscribe"),
            );
            return self.send_error(&err).await;
        }
        self.shared.broker.unsubscribe(&channel, self.sub.id());
        self.send(ServerMsg::Unsubscribed { channel: &channel }.to_json())
            .await
    }

    /// Client broadcast: only into a room this connection has joined, only when rooms allow it.
    async fn publish(
        &mut self,
        channel: String,
        event_type: String,
        data: serde_json::Value,
    ) -> Result<(), End> {
        if !self.client_publish || !channel.starts_with(access::ROOM_PREFIX) {
            let err = ProtocolError::new(
                ErrorCode::Forbidden,
                "clients may publish only to a joined room:… channel, when rooms.client_publish is true",
                Some("publish"),
            );
            return self.send_error(&err).await;
        }
        if !self.subs.contains_key(&channel) {
            let err = ProtocolError::new(
                ErrorCode::Forbidden,
                format!("join {channel:?} before publishing to it"),
                Some("publish"),
            );
            return self.send_error(&err).await;
        }
        let draft = EventDraft {
            event_type,
            channels: vec![channel],
            resource: None,
            resource_id: None,
            action: None,
            invalidate: Vec::new(),
            data,
            actor: self.session.user.as_deref().map(str::to_owned),
            ts: now_millis(),
            origin_client: Some(self.session.client_id.to_string()),
        };
        self.shared.metrics.event_published(&draft.event_type);
        if let Err(e) = self.shared.broker.publish(draft).await {
            let err = ProtocolError::new(ErrorCode::Unavailable, e.to_string(), Some("publish"));
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
        let Some(last) = self.subs.get_mut(&*event.channel) else {
            return Ok(()); // unsubscribed while it was queued
        };
        if event.seq <= *last {
            return Ok(());
        }
        *last = event.seq;
        if self.sub.excludes(event) || self.is_own_room_message(event) {
            return Ok(());
        }
        timed(
            self.shared,
            self.ws.feed(Message::Text(event.frame.clone())),
        )
        .await?;
        self.shared
            .metrics
            .observe_delivery(event.published_at.elapsed());
        Ok(())
    }

    /// Room broadcasts go to the other members only, whatever `exclude_origin` says.
    fn is_own_room_message(&self, event: &Event) -> bool {
        event.channel.starts_with(access::ROOM_PREFIX)
            && event.origin_client.as_deref() == Some(&*self.session.client_id)
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
async fn timed(
    shared: &Shared,
    io: impl std::future::Future<Output = Result<(), WsError>>,
) -> Result<(), End> {
    match tokio::time::timeout(WRITE_TIMEOUT, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Quiet),
        Err(_) => {
            shared.metrics.ws_dropped("write_timeout");
            Err(End::Quiet)
        }
    }
}
