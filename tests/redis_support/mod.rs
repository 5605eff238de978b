//! Shared pieces of the Redis tests: the shared Redis on 127.0.0.1:6379, a private key prefix per
//! test (deleted on drop), a private `redis-server` that a test may kill, and a broker "replica".
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use syncgate::broker::{Broker, RedisBroker};
use syncgate::config::{HistoryConfig, RedisConfig};

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test (or parallel run) uses; its keys are deleted when this drops.
pub struct Prefix {
    pub prefix: String,
    pub url: String,
}

impl Prefix {
    pub fn new(url: &str) -> Prefix {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Prefix {
            prefix: format!("syncgate-test-{}-{n}-{nanos}:", std::process::id()),
            url: url.to_owned(),
        }
    }

    pub fn shared() -> Prefix {
        Prefix::new(SHARED_REDIS)
    }

    pub fn config(&self, stream_maxlen: u64) -> RedisConfig {
        RedisConfig {
            url: self.url.clone(),
            key_prefix: self.prefix.clone(),
            stream_maxlen,
        }
    }

    /// Runs a command against this prefix's Redis (blocking client; tests only).
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| {
                panic!(
                    "no Redis at {}: {e} (scripts/test-all.sh starts one)",
                    self.url
                )
            })
    }

    pub fn keys(&self) -> Vec<String> {
        let mut conn = match redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        {
            Ok(c) => c,
            Err(_) => return Vec::new(),
        };
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        if let Ok(mut conn) = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

pub fn history() -> HistoryConfig {
    HistoryConfig {
        size: 1000,
        ttl: Duration::from_secs(600),
    }
}

/// A broker as one replica would run it, once it reports up.
pub async fn replica(cfg: &RedisConfig) -> Arc<RedisBroker> {
    let broker = RedisBroker::new(cfg, history()).expect("valid redis config");
    wait_until("the broker to connect", || broker.is_up()).await;
    broker
}

/// Polls `cond` until it holds, failing after 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` of this test's own, without persistence, killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = free_port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty: what a Redis without persistence looks like.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test-all.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
