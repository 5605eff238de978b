//! The machine's floor for fan-out: the least work any WebSocket server can do to deliver one
//! message to N sockets, so the fan-out figures can be read against what this box allows.
//!
//! One thread holds every subscribed socket and, on a publish, writes one pre-built frame to each
//! with a single non-blocking `send`, in a loop: no per-socket task, no queue, no wake-up, no
//! framing per socket. It speaks nchan's interface (a WebSocket on any `GET` path subscribes;
//! `POST` publishes its body as a text frame), so `fanout --peer floor` drives it exactly as it
//! drives nchan. A socket whose send would block is counted as lost, never retried: this is a
//! yardstick, not a server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Request heads larger than this are refused; the load generator's are a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

type Subscribers = Arc<Mutex<Vec<TcpStream>>>;

pub async fn serve(listen: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!(
        "floor server on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let subscribers: Subscribers = Arc::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("floor: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, Arc::clone(&subscribers)));
    }
}

/// Serves one connection: a WebSocket handshake hands the socket to the subscribers; publishes
/// are answered on the same connection (keep-alive).
async fn connection(mut stream: TcpStream, subscribers: Subscribers) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(
            req.parse(&buf[..head_end]),
            Ok(httparse::Status::Complete(_))
        ) {
            return;
        }
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if let Some(key) = header("sec-websocket-key") {
            let accept = derive_accept_key(key);
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if stream.write_all(answer.as_bytes()).await.is_ok() {
                lock(&subscribers).push(stream);
            }
            return;
        }
        let length = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        buf.drain(..head_end);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let (sent, blocked) = broadcast(&subscribers, &body);
        let text = format!("{sent} {blocked}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads until the head is complete; returns its length, leaving any body bytes after it in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 2048];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One frame, built once, sent to every socket with one non-blocking write each.
fn broadcast(subscribers: &Subscribers, payload: &[u8]) -> (usize, usize) {
    let frame = text_frame(payload);
    let subs = lock(subscribers);
    let mut sent = 0;
    for s in subs.iter() {
        if matches!(s.try_write(&frame), Ok(n) if n == frame.len()) {
            sent += 1;
        }
    }
    (sent, subs.len() - sent)
}

/// An unmasked server-to-client text frame (RFC 6455 section 5.2).
fn text_frame(payload: &[u8]) -> Vec<u8> {
    server_frame(0x1, payload)
}

/// An unmasked, final server-to-client frame with opcode `op` (also what `held`'s tests feed
/// their reader).
pub fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | op);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

fn lock(subscribers: &Subscribers) -> std::sync::MutexGuard<'_, Vec<TcpStream>> {
    subscribers.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::text_frame;

    #[test]
    fn frames_carry_the_length_in_the_shortest_form() {
        assert_eq!(text_frame(b"hi"), vec![0x81, 2, b'h', b'i']);
        let mid = text_frame(&[b'x'; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
    }
}
