//! Sockets held open for the REST scenario (`subscribe --hold`): subscribed, read, and drained
//! as cheaply as a WebSocket client can be, one blocking thread per socket.
//!
//! Why not tungstenite, as the fan-out's recording subscribers use: this client shares the two
//! cores with the proxy being measured and nobody reads what it receives, so whatever it spends
//! per event is taken from the proxy's row and from no peer's. Decoding every event as a message
//! (a frame parse, UTF-8 validation, an allocation, a trip through the runtime) made it cost
//! 1.10-1.18 µs of those cores per proxied POST; this one costs 0.68-1.10 (BENCHMARKS.md,
//! fourteenth pass). What is left is the kernel waking it and copying what arrived, which no
//! client on the same box avoids. Each wake-up is one blocking `read` of whatever arrived, and
//! the frames in it are walked by their headers only: text is skipped, a ping is answered, a
//! close ends the socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use crate::peer::Peer;

/// Opens `sockets` connections over `urls` (round-robin), subscribes each, says
/// `READY <connected> <failed>` once all have been confirmed, and holds them until killed.
pub fn run(peer: Peer, urls: &[String], sockets: usize) -> Result<(), String> {
    let mut threads = Vec::with_capacity(sockets);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
    for i in 0..sockets {
        let url = urls[i % urls.len()].clone();
        let ready = ready_tx.clone();
        threads.push(std::thread::spawn(move || {
            let mut ready = Some(ready);
            if let Err(e) = hold(peer, &url, &mut ready) {
                eprintln!("syncgate-loadgen: held socket on {url}: {e}");
            }
            if let Some(r) = ready {
                let _ = r.send(false);
            }
        }));
    }
    drop(ready_tx);
    let (mut connected, mut failed) = (0usize, 0usize);
    while connected + failed < sockets {
        match ready_rx.recv() {
            Ok(true) => connected += 1,
            Ok(false) => failed += 1,
            Err(_) => break,
        }
    }
    println!("READY {connected} {failed}");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// One socket, from its handshake until the server closes it.
fn hold(
    peer: Peer,
    url: &str,
    ready: &mut Option<std::sync::mpsc::Sender<bool>>,
) -> io::Result<()> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| invalid(format!("not a ws:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: http://{authority}\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = read_head(&mut stream, &mut buf)?;
    if peer == Peer::Syncgate {
        send(
            &mut stream,
            OP_TEXT,
            br#"{"op":"subscribe","channel":"projects"}"#,
        )?;
    } else if let Some(r) = ready.take() {
        // nchan and the floor confirm nothing: the open socket is subscribed.
        let _ = r.send(true);
    }
    let mut frames = Frames::default();
    loop {
        let confirming = ready.is_some();
        let consumed = frames.walk(&buf[..have], confirming, |op, payload| match op {
            OP_TEXT => {
                if contains(payload, br#""op":"subscribed""#)
                    && let Some(r) = ready.take()
                {
                    let _ = r.send(true);
                }
                Ok(true)
            }
            OP_PING => send(&mut stream, OP_PONG, payload).map(|()| true),
            OP_CLOSE => {
                let _ = send(&mut stream, OP_CLOSE, payload.get(..2).unwrap_or_default());
                Ok(false)
            }
            _ => Ok(true),
        })?;
        let Some(consumed) = consumed else {
            return Ok(()); // closed
        };
        buf.copy_within(consumed..have, 0);
        have -= consumed;
        if have == buf.len() {
            return Err(invalid(
                "a frame that must be read whole exceeds 64 KiB".into(),
            ));
        }
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}

/// Reads the handshake's answer; what followed it stays at the front of `buf` (its length).
fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return Err(invalid("closed during the handshake".into()));
        }
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..have]);
                let line = line.lines().next().unwrap_or_default();
                return Err(invalid(format!("handshake refused: {line}")));
            }
            buf.copy_within(end + 4..have, 0);
            return Ok(have - end - 4);
        }
        if have == buf.len() {
            return Err(invalid("handshake answer over 64 KiB".into()));
        }
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Where the server's frame stream stands between reads.
#[derive(Default)]
struct Frames {
    /// Bytes of a skipped frame's payload still to come.
    skip: usize,
}

impl Frames {
    /// Walks the frames in `data`, calling `seen` with each one whose payload matters (control
    /// frames always, text frames if `text`) and skipping the payloads of the others without
    /// looking at them. Returns how many bytes of `data` were
    /// used (the rest is an incomplete frame, to be read again with more), or `None` once `seen`
    /// answers `false`.
    fn walk(
        &mut self,
        data: &[u8],
        text: bool,
        mut seen: impl FnMut(u8, &[u8]) -> io::Result<bool>,
    ) -> io::Result<Option<usize>> {
        let mut at = self.skip.min(data.len());
        self.skip -= at;
        while let Some((op, header, len)) = header(&data[at..]) {
            let start = at + header;
            let whole = data.len() - start >= len;
            if op >= OP_CLOSE || (text && op == OP_TEXT) {
                if !whole {
                    break; // read it whole next time
                }
                if !seen(op, &data[start..start + len])? {
                    return Ok(None);
                }
                at = start + len;
            } else if whole {
                at = start + len;
            } else {
                self.skip = len - (data.len() - start);
                at = data.len();
            }
        }
        Ok(Some(at))
    }
}

/// A server frame's opcode, header length and payload length, if its header is all there.
fn header(data: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (data.first()?, data.get(1)?);
    let (header, len) = match b1 & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(data.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(data.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    Some((b0 & 0x0f, header, len))
}

/// Sends one final frame, masked as a client must. Everything this client sends (the
/// subscribe message, pongs, a close) fits a one-byte length, as control frames must.
fn send(stream: &mut TcpStream, op: u8, payload: &[u8]) -> io::Result<()> {
    const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x8e];
    let len = u8::try_from(payload.len())
        .ok()
        .filter(|&n| n <= 125)
        .ok_or_else(|| invalid(format!("a {}-byte frame to send", payload.len())))?;
    let mut frame = Vec::with_capacity(payload.len() + 6);
    frame.extend_from_slice(&[0x80 | op, 0x80 | len]);
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    stream.write_all(&frame)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::server_frame as frame;

    /// Feeds `stream` in pieces of `step` bytes, as reads would return it; what `seen` got.
    fn walk_in_pieces(stream: &[u8], step: usize, text: bool) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Frames::default();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for piece in stream.chunks(step) {
            buf.extend_from_slice(piece);
            let used = frames
                .walk(&buf, text, |op, p| {
                    got.push((op, p.to_vec()));
                    Ok(op != OP_CLOSE)
                })
                .unwrap();
            match used {
                Some(n) => {
                    buf.drain(..n);
                }
                None => break,
            }
        }
        got
    }

    #[test]
    fn control_frames_and_text_are_found_across_any_split_and_data_is_skipped() {
        let big = vec![b'x'; 70_000];
        let mid = vec![b'y'; 300];
        let stream = [
            frame(OP_TEXT, br#"{"op":"subscribed"}"#),
            frame(0x2, &big),
            frame(OP_PING, b"p1"),
            frame(0x2, &mid),
            frame(OP_TEXT, b"after"),
            frame(OP_CLOSE, &[0x03, 0xe8]),
            frame(OP_TEXT, b"never"),
        ]
        .concat();
        let with_text = vec![
            (OP_TEXT, br#"{"op":"subscribed"}"#.to_vec()),
            (OP_PING, b"p1".to_vec()),
            (OP_TEXT, b"after".to_vec()),
            (OP_CLOSE, vec![0x03, 0xe8]),
        ];
        let control_only = vec![(OP_PING, b"p1".to_vec()), (OP_CLOSE, vec![0x03, 0xe8])];
        for step in [1, 2, 3, 7, 125, 4096, stream.len()] {
            assert_eq!(
                walk_in_pieces(&stream, step, true),
                with_text,
                "pieces of {step}"
            );
            assert_eq!(
                walk_in_pieces(&stream, step, false),
                control_only,
                "pieces of {step}, text skipped"
            );
        }
    }
}
