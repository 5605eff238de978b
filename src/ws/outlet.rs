//! Event frames written straight to an idle WebSocket by the fan-out.
//!
//! Why: delivering an event through the connection's task meant waking the task, polling its
//! `select!` (queue, socket, timers), framing the event in tungstenite and flushing it: about
//! 3.5 µs of user CPU per delivery with 10,000 sockets, half again the `send` itself. While a
//! connection waits with nothing queued and nothing buffered, the fan-out (on the connection's
//! own event loop, see `broker::fanout`) now writes the event's pre-framed bytes in one `send`.
//! Whatever cannot go out whole and at once takes the old path: an event that meets a full
//! socket is queued for the task, and the unsent tail of a partly written frame is kept here
//! and goes out before any other byte.
//!
//! Bytes never interleave: the task's own writes (tungstenite's, through [`OutletIo`]) and the
//! direct ones both go to the socket only when nothing is pending, and otherwise join the
//! pending bytes whole.
//!
//! When events come in a burst (the relay finds several batches waiting), the frames a socket
//! gets during the burst are held and leave in one `send` at its end ([`corked`]): one write
//! and one wake-up of the reader per burst instead of per event.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::admin::metrics::Metrics;
use crate::broker::{Delivery, Event};

/// Pending bytes beyond which the task's writes wait for the peer (backpressure reaches
/// tungstenite, whose writes are bounded by the connection's write timeout).
const PENDING_LIMIT: usize = 256 * 1024;

/// One connection's write side, shared by its task and the fan-out.
#[derive(Debug)]
pub struct Outlet {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct State {
    /// `None` without a TCP socket to write to (tests), and once the connection has ended.
    stream: Option<Arc<TcpStream>>,
    /// The task allows direct writes only while it waits with nothing queued or buffered.
    open: bool,
    /// Accepted bytes not yet sent; they go out before anything else.
    pending: BytesMut,
    /// The task's, while it waits: woken when `pending` needs draining.
    waker: Option<Waker>,
    /// Each subscribed channel and the last `seq` delivered on it (drops replay/live overlap).
    /// Looked up for every event offered, so hashed with foldhash's seeded hash rather than
    /// SipHash (about 180 instructions an event); names are the client's, so still seeded.
    subs: foldhash::HashMap<String, u64>,
    /// `pending` holds frames of the current burst, sent when it ends (see [`corked`]).
    corked: bool,
}

thread_local! {
    /// While a burst is offered on this thread: the outlets holding its frames.
    static BURST: RefCell<Option<Vec<Arc<Outlet>>>> = const { RefCell::new(None) };
}

/// Runs `offers` as one burst: frames written directly during it are held per socket and sent
/// together when it ends. Offers to a socket happen on its own loop's thread, so no socket task
/// runs in between.
pub fn corked(offers: impl FnOnce()) {
    /// Ends the burst even if `offers` unwinds: held frames must never stay held.
    struct Burst;
    impl Drop for Burst {
        fn drop(&mut self) {
            let held = BURST.with(|b| b.borrow_mut().take()).unwrap_or_default();
            for outlet in held {
                outlet.uncork();
            }
        }
    }
    BURST.with(|b| *b.borrow_mut() = Some(Vec::new()));
    let _burst = Burst;
    offers();
}

/// Registers `outlet` with the burst under way, if any.
fn join_burst(outlet: &Arc<Outlet>) -> bool {
    BURST.with(|b| match b.borrow_mut().as_mut() {
        Some(held) => {
            held.push(Arc::clone(outlet));
            true
        }
        None => false,
    })
}

impl Outlet {
    pub fn new(stream: Option<Arc<TcpStream>>, metrics: Arc<Metrics>) -> Outlet {
        Outlet {
            state: Mutex::new(State {
                stream,
                open: false,
                pending: BytesMut::new(),
                waker: None,
                subs: foldhash::HashMap::default(),
                corked: false,
            }),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `event` now if the connection is idle and the socket takes the frame (whole, or
    /// in part: the rest is kept and the task woken to send it); otherwise calls `enqueue`.
    /// Both happen under the outlet's lock, so an event queued before the task opened the
    /// outlet is never overtaken by a later one written directly.
    ///
    /// During a burst ([`corked`]) the frame joins the socket's held bytes instead.
    pub fn offer(self: &Arc<Self>, event: &Event, enqueue: impl FnOnce() -> Delivery) -> Delivery {
        let mut st = self.lock();
        let State {
            stream,
            open,
            pending,
            waker,
            subs,
            corked,
        } = &mut *st;
        let Some(stream) = stream
            .as_deref()
            .filter(|_| *open && (pending.is_empty() || *corked))
        else {
            return enqueue();
        };
        let Some(last) = subs.get_mut(&*event.channel) else {
            return Delivery::Queued; // unsubscribed: nothing to deliver
        };
        if !fresh(*last, event.seq) {
            return Delivery::Queued;
        }
        let frame = event.ws_frame();
        if !*corked {
            *corked = join_burst(self);
        }
        if *corked {
            pending.extend_from_slice(frame);
        } else {
            let written = match stream.try_write(frame) {
                Ok(n) => n,
                // Full, or broken: the task finds out which when it writes the queued event,
                // and until then later events queue behind this one.
                Err(_) => {
                    *open = false;
                    return enqueue();
                }
            };
            if written < frame.len() {
                pending.extend_from_slice(&frame[written..]);
                hand_to_task(open, waker);
            }
        }
        if event.seq != 0 {
            *last = event.seq;
        }
        drop(st);
        self.metrics.observe_delivery(event.published_at.elapsed());
        Delivery::Queued
    }

    /// The burst is over: sends the frames it held in one write; what the socket does not take
    /// is left to the task, as for a frame sent in part.
    fn uncork(&self) {
        let mut st = self.lock();
        let State {
            stream,
            open,
            pending,
            waker,
            corked,
            ..
        } = &mut *st;
        *corked = false;
        if pending.is_empty() {
            return;
        }
        // Full or broken: the task finds out which when it drains.
        let sent = match stream.as_deref().filter(|_| *open) {
            Some(stream) => stream.try_write(pending).unwrap_or(0),
            None => 0,
        };
        pending.advance(sent);
        if !pending.is_empty() {
            hand_to_task(open, waker);
        }
    }

    /// Lets the fan-out write directly until [`Outlet::hold`]; the task calls it right before it
    /// waits, with its writes flushed. `queue_empty` is asked under the lock (see `offer`).
    pub fn open(&self, queue_empty: impl FnOnce() -> bool) {
        let mut st = self.lock();
        st.open = st.stream.is_some() && st.pending.is_empty() && queue_empty();
    }

    /// The task is about to act (and maybe write): the fan-out queues from now on.
    pub fn hold(&self) {
        self.lock().open = false;
    }

    /// The connection has ended: nothing is written to it any more, and the socket is released.
    pub fn shut(&self) {
        let mut st = self.lock();
        st.open = false;
        st.stream = None;
        st.waker = None;
    }

    /// Sends the pending bytes; ready once there are none left after some were there (the task
    /// then loops and opens again), pending while there are none or the socket is full.
    pub fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        if st.pending.is_empty() {
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let Some(stream) = st.stream.clone() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        drain(&stream, &mut st.pending, cx)
    }

    /// Whether the task should write `event` (subscribed, not delivered yet), marking it
    /// delivered if so.
    pub fn take_fresh(&self, event: &Event) -> bool {
        let mut st = self.lock();
        let Some(last) = st.subs.get_mut(&*event.channel) else {
            return false; // unsubscribed while it was queued
        };
        if !fresh(*last, event.seq) {
            return false;
        }
        if event.seq != 0 {
            *last = event.seq;
        }
        true
    }

    /// Runs `f` on the subscriptions map (subscribe, unsubscribe, dedup on the task's path).
    pub fn subs<R>(&self, f: impl FnOnce(&mut foldhash::HashMap<String, u64>) -> R) -> R {
        f(&mut self.lock().subs)
    }
}

/// Pending bytes are left: direct writes stop and the task is woken to send them.
fn hand_to_task(open: &mut bool, waker: &mut Option<Waker>) {
    *open = false;
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

/// Whether an event numbered `seq` is new to a channel whose last delivered is `last`. Room
/// presence and broadcasts (seq 0) are relayed once and never replayed, so never deduplicated.
fn fresh(last: u64, seq: u64) -> bool {
    seq == 0 || seq > last
}

/// Writes `pending` out until it is empty (ready) or the socket is full (pending, woken when
/// it can take more).
fn drain(stream: &TcpStream, pending: &mut BytesMut, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while !pending.is_empty() {
        match stream.try_write(pending) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => pending.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = std::task::ready!(stream.poll_write_ready(cx)) {
                    return Poll::Ready(Err(e));
                }
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// The socket as tungstenite sees it: reads go straight to it, writes go behind whatever the
/// outlet holds pending.
pub struct OutletIo {
    stream: Arc<TcpStream>,
    outlet: Arc<Outlet>,
}

impl OutletIo {
    pub fn new(stream: Arc<TcpStream>, outlet: Arc<Outlet>) -> OutletIo {
        OutletIo { stream, outlet }
    }
}

impl AsyncRead for OutletIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // `try_read` cleared the readiness: poll it again, which registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for OutletIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.outlet.lock();
        if st.pending.is_empty() {
            match self.stream.try_write(buf) {
                Ok(n) if n == buf.len() => return Poll::Ready(Ok(n)),
                Ok(n) => {
                    st.pending.extend_from_slice(&buf[n..]);
                    return Poll::Ready(Ok(buf.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        } else if st.pending.len() >= PENDING_LIMIT {
            std::task::ready!(drain(&self.stream, &mut st.pending, cx))?;
        }
        st.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.outlet.lock();
        drain(&self.stream, &mut st.pending, cx)
    }

    /// Flushes only: the socket closes when the connection's task and the outlet both let go
    /// of it (`Outlet::shut`).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    fn event(seq: u64, payload: &str) -> Event {
        Event {
            channel: Arc::from("c"),
            seq,
            event_type: Arc::from("t"),
            frame: crate::events::envelope::Framed::from_text(payload),
            origin_client: None,
            actor: None,
            published_at: std::time::Instant::now(),
        }
    }

    /// An outlet on one end of a loopback connection, and the other end.
    async fn pair() -> (Arc<Outlet>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outlet = Arc::new(Outlet::new(
            Some(Arc::new(server)),
            Arc::new(Metrics::new()),
        ));
        outlet.subs(|subs| subs.insert("c".to_owned(), 0));
        (outlet, client)
    }

    /// Lets the task's side send what the outlet holds, ends the connection, and returns all the
    /// client read.
    async fn drain_and_close(outlet: &Outlet, mut client: TcpStream) -> Vec<u8> {
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        std::future::poll_fn(|cx| outlet.poll_drained(cx))
            .await
            .unwrap();
        outlet.shut();
        reader.await.unwrap()
    }

    fn offer(outlet: &Arc<Outlet>, event: &Event) -> bool {
        let queued = AtomicBool::new(false);
        outlet.offer(event, || {
            queued.store(true, Ordering::Relaxed);
            Delivery::Queued
        });
        queued.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn an_idle_outlet_writes_each_new_event_once_as_a_frame() {
        let (outlet, mut client) = pair().await;
        outlet.open(|| true);
        let first = event(1, r#"{"seq":1}"#);
        assert!(!offer(&outlet, &first), "written, not queued");
        assert!(!offer(&outlet, &first), "a repeat is dropped, not queued");
        let mut got = vec![0u8; first.ws_frame().len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, first.ws_frame());
        assert_eq!(&got[..2], &[0x81, 9]);
    }

    #[tokio::test]
    async fn events_queue_while_the_task_holds_or_has_events_waiting() {
        let (outlet, _client) = pair().await;
        assert!(offer(&outlet, &event(1, "{}")), "not opened yet");
        outlet.open(|| false);
        assert!(
            offer(&outlet, &event(2, "{}")),
            "events already queued go first"
        );
        outlet.open(|| true);
        outlet.hold();
        assert!(offer(&outlet, &event(3, "{}")));
        outlet.open(|| true);
        outlet.shut();
        assert!(offer(&outlet, &event(4, "{}")), "an ended connection");
    }

    #[tokio::test]
    async fn an_event_that_meets_a_full_socket_is_not_overtaken_once_it_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let server = Arc::new(listener.accept().await.unwrap().0);
        let outlet = Arc::new(Outlet::new(
            Some(Arc::clone(&server)),
            Arc::new(Metrics::new()),
        ));
        outlet.subs(|subs| subs.insert("c".to_owned(), 0));
        outlet.open(|| true);
        // Fill the socket so the next write cannot take a byte.
        let filler = [0u8; 64 * 1024];
        let mut filled = 0;
        while let Ok(n) = server.try_write(&filler) {
            filled += n;
        }
        assert!(
            offer(&outlet, &event(1, "{}")),
            "queued: the socket is full"
        );
        // The reader catches up; the first event is still in the task's queue.
        let mut sink = vec![0u8; filled];
        client.read_exact(&mut sink).await.unwrap();
        assert!(
            offer(&outlet, &event(2, "{}")),
            "queued behind the first, not written ahead of it"
        );
    }

    #[tokio::test]
    async fn a_frame_the_socket_takes_in_part_finishes_before_anything_else() {
        let (outlet, client) = pair().await;
        outlet.open(|| true);
        let big = event(1, &format!(r#""{}""#, "x".repeat(8 << 20)));
        assert!(!offer(&outlet, &big));
        assert!(
            offer(&outlet, &event(2, "{}")),
            "queued behind the unsent tail"
        );
        let all = drain_and_close(&outlet, client).await;
        assert_eq!(all, big.ws_frame());
    }

    #[tokio::test]
    async fn a_burst_is_held_and_sent_whole_and_in_order_when_it_ends() {
        let (outlet, mut client) = pair().await;
        outlet.open(|| true);
        let events = [event(1, "[1]"), event(2, "[2]"), event(3, "[3]")];
        corked(|| {
            for e in &events {
                assert!(!offer(&outlet, e), "held for the burst, not queued");
            }
            assert!(!offer(&outlet, &events[1]), "a repeat is dropped");
            let mut probe = [0u8; 1];
            assert!(
                client.try_read(&mut probe).is_err(),
                "nothing is sent before the burst ends"
            );
        });
        let expected: Vec<u8> = events.iter().flat_map(|e| e.ws_frame().to_vec()).collect();
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        assert!(
            !offer(&outlet, &event(4, "[4]")),
            "still idle: written at once"
        );
    }

    #[tokio::test]
    async fn a_burst_the_socket_cannot_take_whole_is_left_to_the_task() {
        let (outlet, client) = pair().await;
        outlet.open(|| true);
        let big = event(1, &format!(r#""{}""#, "x".repeat(8 << 20)));
        let small = event(2, "{}");
        corked(|| {
            assert!(!offer(&outlet, &big));
            assert!(!offer(&outlet, &small));
        });
        assert!(
            offer(&outlet, &event(3, "{}")),
            "the task owns the socket until the held bytes are out"
        );
        let all = drain_and_close(&outlet, client).await;
        assert_eq!(all, [big.ws_frame(), small.ws_frame()].concat());
    }

    #[test]
    fn frame_headers_carry_the_length_in_the_smallest_form() {
        for (len, header) in [
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let e = event(1, &"x".repeat(len));
            let frame = e.ws_frame();
            assert_eq!(&frame[..header.len()], &header[..], "{len}");
            assert_eq!(frame.len(), header.len() + len);
        }
    }
}
