//! The real `syncgate` binary driven as a user would: `--version`, `check`, `run` with a config file,
//! signals (SIGTERM drain, SIGHUP reload), `tail`, and memory use while streaming large bodies.
//!
//! Every child process lives in a `Proc` guard that kills and reaps it on drop and prints its stderr
//! when the test fails. Ports are picked by binding `127.0.0.1:0` and releasing it, so a start is
//! retried on the rare collision.

mod common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use common::{WAIT, connect, recv_close_code, recv_json, start_upstream};

const BIN: &str = env!("CARGO_BIN_EXE_syncgate");
const MIB: u64 = 1024 * 1024;
/// The memory ceiling the streaming issue sets for the sidecar, downloads and uploads alike.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers: temp files, child processes, ports, probes.
// ---------------------------------------------------------------------------------------------

/// A uniquely named file under the temp dir, removed on drop.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("syncgate-cli-{}-{n}-{name}", std::process::id()));
        let file = TempFile { path };
        file.write(contents);
        file
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The binary with a clean environment for what it reads (config path, log level), and plain logs
/// (the pipe is not a terminal; `NO_COLOR` keeps escape codes out of failure dumps).
fn syncgate() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("SYNCGATE_CONFIG")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs the binary to completion (for `--version`, `--help`, `check`).
fn run_to_end(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running child: killed and reaped on drop, its stderr collected (and printed if the test fails),
/// its stdout lines optionally delivered to a channel.
struct Proc {
    name: &'static str,
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_lines: Option<mpsc::UnboundedReceiver<String>>,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, capture_stdout: bool) -> Proc {
        cmd.stderr(Stdio::piped());
        cmd.stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({BIN}): {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            // Lines as they come, so a test can wait for one while the process runs.
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf));
                buf.clear();
            }
        });
        let stdout_lines = child.stdout.take().map(|pipe| {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Proc {
            name,
            child,
            stderr,
            stderr_reader: Some(stderr_reader),
            stdout_lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status if the process has ended.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll {}: {e}", self.name))
    }

    /// Polls until the process exits; `None` when it still runs after `within`.
    async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the collected stderr until it contains `needle`.
    async fn wait_stderr(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(needle) {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before writing {needle:?} to stderr",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not write {needle:?} to stderr within {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next stdout line; fails the test after `within`.
    async fn next_stdout_line(&mut self, within: Duration) -> String {
        let rx = self.stdout_lines.as_mut().expect("stdout was not captured");
        tokio::time::timeout(within, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{} printed no stdout line within {within:?}", self.name))
            .unwrap_or_else(|| panic!("{} closed its stdout", self.name))
    }

    /// All of stderr, for a process that has exited (its pipe is closed, so the reader ends).
    fn finish_stderr(&mut self) -> String {
        assert!(self.exited().is_some(), "{} is still running", self.name);
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }

    /// Sends a signal with the `kill` command (no libc, no unsafe).
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{sig}: {e}"));
        assert!(
            status.success(),
            "kill -{sig} {} failed: {status}",
            self.pid()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}) stderr -----\n{}----- end of {} stderr -----",
                self.name,
                self.child.id(),
                self.stderr(),
                self.name
            );
        }
    }
}

/// Two distinct ports that were free a moment ago.
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("local_addr").port();
    (port(&a), port(&b))
}

/// One GET that may fail (the server may not be up yet): the status, or `None`.
async fn probe(url: &str) -> Option<StatusCode> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri = url.parse().expect("probe URL");
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(resp)) => Some(resp.status()),
        _ => None,
    }
}

/// The sidecar binary in front of an upstream, with its config in a temp file.
struct Sidecar {
    // Declared first so it is killed before its config file is removed.
    proc: Proc,
    config: TempFile,
    public: u16,
    admin: u16,
    upstream: SocketAddr,
}

impl Sidecar {
    /// Starts the binary with `extra_yaml` appended to a config naming its ports and the upstream,
    /// and returns once `GET /healthz` answers 200. Retries with new ports on a bind collision.
    async fn start(upstream: SocketAddr, extra_yaml: &str) -> Sidecar {
        Sidecar::start_with_env(upstream, extra_yaml, &[]).await
    }

    /// `start`, with environment variables set for the process.
    async fn start_with_env(
        upstream: SocketAddr,
        extra_yaml: &str,
        env: &[(&str, &str)],
    ) -> Sidecar {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let (public, admin) = free_ports();
            let config = TempFile::new(
                "sidecar.yaml",
                &sidecar_yaml(public, admin, upstream, extra_yaml),
            );
            let mut proc = Proc::spawn(
                "syncgate",
                syncgate()
                    .arg("--config")
                    .arg(config.path())
                    .envs(env.iter().copied()),
                false,
            );
            let healthz = format!("http://127.0.0.1:{admin}/healthz");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = proc.exited() {
                    let stderr = proc.stderr();
                    if stderr.contains("cannot listen") && attempt < ATTEMPTS {
                        break; // a port was taken in between: new ports, new process
                    }
                    panic!("syncgate exited at start ({status}); stderr:\n{stderr}");
                }
                if probe(&healthz).await == Some(StatusCode::OK) {
                    return Sidecar {
                        proc,
                        config,
                        public,
                        admin,
                        upstream,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "{healthz} did not answer 200 within 15s"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        unreachable!("the last attempt panics instead of breaking")
    }

    /// Replaces the config file (same ports and upstream) with `extra_yaml` appended.
    fn rewrite_config(&self, extra_yaml: &str) {
        self.config.write(&sidecar_yaml(
            self.public,
            self.admin,
            self.upstream,
            extra_yaml,
        ));
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.public)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// Peak resident set size (`VmHWM`) of the sidecar process, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.proc.pid());
        let status =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM line in {path}:\n{status}"))
    }
}

fn sidecar_yaml(public: u16, admin: u16, upstream: SocketAddr, extra_yaml: &str) -> String {
    format!(
        "listen: \"127.0.0.1:{public}\"\nadmin_listen: \"127.0.0.1:{admin}\"\n\
         upstream:\n  url: \"http://{upstream}\"\n{extra_yaml}"
    )
}

/// The `Cache-Control` header of a GET through the proxy.
async fn cache_control_of(url: &str) -> String {
    let reply = common::get(url).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {url}");
    reply
        .headers
        .get("cache-control")
        .unwrap_or_else(|| panic!("GET {url}: no Cache-Control header"))
        .to_str()
        .expect("Cache-Control is ASCII")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// --version, --help
// ---------------------------------------------------------------------------------------------

#[test]
fn version_prints_the_crate_version() {
    let out = run_to_end(syncgate().arg("--version"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "--version failed: {out:?}");
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {stdout:?}, expected version {}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn help_lists_the_check_and_tail_commands() {
    let out = run_to_end(syncgate().arg("--help"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "--help failed: {out:?}");
    for command in ["check", "tail"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(command)),
            "--help does not list the {command} command:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_accepts_the_example_config_and_prints_the_rule_table() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let yaml = std::fs::read_to_string(&example)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", example.display()));
    let out = run_to_end(syncgate().arg("check").arg("--config").arg(&example));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "check rejected the example ({}):\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("config OK: {}", example.display())),
        "{stdout}"
    );
    // What the example configures must show up resolved in the table.
    for expected in [
        "^/api/(projects|dashboard|notifications)(/.*)?$",
        "no-cache, no-store, must-revalidate",
        "^/static/",
        "public, max-age=31536000, immutable",
        "^/api/projects/?$",
        "project_created",
        "^/api/projects/(?P<id>[^/]+)$",
        "project_updated",
        "project:{id}",
    ] {
        assert!(
            yaml.contains(expected),
            "test out of date: {expected:?} is no longer in the example"
        );
        assert!(
            stdout.contains(expected),
            "the rule table lacks {expected:?}:\n{stdout}"
        );
    }
    let cache_line = stdout
        .lines()
        .find(|l| l.contains("^/static/"))
        .expect("a cache rule line for ^/static/");
    assert!(cache_line.contains("GET,HEAD"), "{cache_line}");
}

/// Runs `check` on `yaml` and asserts exit 1 with the file and every `expected` text on stderr.
fn assert_check_rejects(yaml: &str, expected: &[&str]) {
    let file = TempFile::new("bad.yaml", yaml);
    let out = run_to_end(syncgate().arg("check").arg("--config").arg(file.path()));
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check accepted an invalid config:\n{yaml}\nstdout:\n{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(&file.display()),
        "stderr does not name the file {}:\n{stderr}",
        file.display()
    );
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(
        !text(&out.stdout).contains("config OK"),
        "stdout says OK for an invalid config"
    );
}

#[test]
fn check_rejects_unknown_keys_with_file_and_key_path() {
    assert_check_rejects(
        "events:\n  rules:\n    - methodz: [POST]\n",
        &["events.rules[0].methodz", "allowed keys", "methods"],
    );
    assert_check_rejects("lisen: \"127.0.0.1:8080\"\n", &["lisen", "allowed keys"]);
}

#[test]
fn check_rejects_a_bad_regex_with_its_key_path() {
    assert_check_rejects(
        "cache_control:\n  rules:\n    - path: \"^/api/([\"\n      value: no-cache\n",
        &["cache_control.rules[0].path", "regex"],
    );
}

#[test]
fn check_rejects_a_bad_duration_with_its_key_path() {
    assert_check_rejects(
        "upstream:\n  connect_timeout: soon\n",
        &["upstream.connect_timeout", "soon"],
    );
}

#[test]
fn check_rejects_a_bad_url_with_its_key_path() {
    assert_check_rejects(
        "upstream:\n  url: \"ftp://example.com\"\n",
        &["upstream.url", "http://"],
    );
}

#[test]
fn check_reads_the_config_path_from_syncgate_config() {
    let bad = TempFile::new("env-bad.yaml", "shutdown_grace: forever\n");
    let out = run_to_end(syncgate().arg("check").env("SYNCGATE_CONFIG", bad.path()));
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check ignored SYNCGATE_CONFIG pointing to an invalid file; stdout:\n{}",
        text(&out.stdout)
    );
    assert!(stderr.contains(&bad.display()), "{stderr}");
    assert!(stderr.contains("shutdown_grace"), "{stderr}");

    let good = TempFile::new("env-good.yaml", "shutdown_grace: 3s\n");
    let out = run_to_end(syncgate().arg("check").env("SYNCGATE_CONFIG", good.path()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("config OK: {}", good.display())),
        "{stdout}"
    );
    assert!(stdout.contains("3s grace"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_binary_exits_1_on_invalid_config() {
    let file = TempFile::new("run-bad.yaml", "upstream:\n  url: \"not a url\"\n");
    let mut proc = Proc::spawn(
        "syncgate",
        syncgate().arg("--config").arg(file.path()),
        false,
    );
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("syncgate kept running with an invalid config");
    assert_eq!(status.code(), Some(1), "exit status {status}");
    let stderr = proc.finish_stderr();
    assert!(stderr.contains("upstream.url"), "{stderr}");
    assert!(stderr.contains(&file.display()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_syncgate_workers_is_refused_with_what_is_allowed() {
    for bad in ["0", "two", "100000"] {
        let mut proc = Proc::spawn("syncgate", syncgate().env("SYNCGATE_WORKERS", bad), false);
        let status = proc
            .wait_exit(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("syncgate kept running with SYNCGATE_WORKERS={bad}"));
        assert_eq!(status.code(), Some(1), "exit status {status}");
        let stderr = proc.finish_stderr();
        assert!(
            stderr.contains("SYNCGATE_WORKERS") && stderr.contains("from 1 to 256"),
            "{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming: memory stays flat for a 1 GiB download and a 256 MiB upload.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_keeps_rss_under_64_mib() {
    let upstream = start_upstream().await;
    let sidecar = Sidecar::start(upstream, "shutdown_grace: 1s\n").await;
    let client: Client<_, BoxBody<Bytes, Infallible>> =
        Client::builder(TokioExecutor::new()).build_http();

    // Download: count frames as they arrive, never keep them.
    const DOWNLOAD: u64 = 1024 * MIB;
    let started = Instant::now();
    let req = Request::get(sidecar.url(&format!("/api/big?bytes={DOWNLOAD}")))
        .body(Empty::new().boxed())
        .expect("request");
    let received = tokio::time::timeout(Duration::from_secs(180), async {
        let resp = client.request(req).await.expect("GET /api/big failed");
        assert_eq!(resp.status(), StatusCode::OK, "GET /api/big");
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap_or_else(|e| panic!("download broke after {n} bytes: {e}"));
            if let Some(data) = frame.data_ref() {
                n += data.len() as u64;
            }
        }
        n
    })
    .await
    .expect("1 GiB download did not finish within 180s");
    let download_time = started.elapsed();
    assert_eq!(received, DOWNLOAD, "bytes received through the proxy");
    let after_download = sidecar.peak_rss_kib();
    println!(
        "1 GiB download: {download_time:.2?} ({:.0} MiB/s), sidecar VmHWM {after_download} KiB ({:.1} MiB)",
        DOWNLOAD as f64 / MIB as f64 / download_time.as_secs_f64(),
        after_download as f64 / 1024.0
    );
    assert!(
        after_download < RSS_LIMIT_KIB,
        "sidecar peak RSS {after_download} KiB after a 1 GiB download (limit {RSS_LIMIT_KIB} KiB)"
    );

    // Upload: a generated stream of 64 KiB chunks, counted by the upstream as it arrives.
    const UPLOAD: u64 = 256 * MIB;
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let chunks = futures_util::stream::iter(0..UPLOAD / CHUNK as u64)
        .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
    let started = Instant::now();
    let req = Request::post(sidecar.url("/api/upload"))
        .header("content-type", "application/octet-stream")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .expect("request");
    let answer = tokio::time::timeout(Duration::from_secs(120), async {
        let resp = client.request(req).await.expect("POST /api/upload failed");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("upload answer");
        (status, body.to_bytes())
    })
    .await
    .expect("256 MiB upload did not finish within 120s");
    let upload_time = started.elapsed();
    assert_eq!(answer.0, StatusCode::OK, "POST /api/upload: {:?}", answer.1);
    let counted: Value = serde_json::from_slice(&answer.1).expect("upload answer is JSON");
    assert_eq!(
        counted["bytes"].as_u64(),
        Some(UPLOAD),
        "bytes the upstream received: {counted}"
    );
    let after_upload = sidecar.peak_rss_kib();
    println!(
        "256 MiB upload: {upload_time:.2?} ({:.0} MiB/s), sidecar VmHWM {after_upload} KiB ({:.1} MiB)",
        UPLOAD as f64 / MIB as f64 / upload_time.as_secs_f64(),
        after_upload as f64 / 1024.0
    );
    assert!(
        after_upload < RSS_LIMIT_KIB,
        "sidecar peak RSS {after_upload} KiB after a 256 MiB upload (limit {RSS_LIMIT_KIB} KiB)"
    );
}

// ---------------------------------------------------------------------------------------------
// Event loops: the binary deals connections over one loop per core
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_room_messages_reach_sockets_on_every_loop_in_order() {
    // Three loops whatever the machine: offers cross loops in both directions.
    events_and_room_messages_in_order(&[("SYNCGATE_WORKERS", "3")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_loop_serves_everything() {
    events_and_room_messages_in_order(&[("SYNCGATE_WORKERS", "1")]).await;
}

async fn events_and_room_messages_in_order(env: &[(&str, &str)]) {
    use common::{send_json, subscribe};
    let upstream = start_upstream().await;
    let sidecar = Sidecar::start_with_env(upstream, "", env).await;
    let ws_url = format!("ws://127.0.0.1:{}/api/ws", sidecar.public);
    // Consecutive connections land on different loops (round-robin), so six sockets cover every
    // loop of a machine with up to six cores.
    let mut sockets = Vec::new();
    for _ in 0..6 {
        let mut ws = connect(&ws_url, &[])
            .await
            .unwrap_or_else(|e| panic!("connect {ws_url}: {e}"));
        assert_eq!(recv_json(&mut ws).await["op"], "welcome");
        subscribe(&mut ws, "projects", None).await;
        sockets.push(ws);
    }
    // Eight clients at once, so events also come in bursts (a socket's frames of one burst
    // leave together): every socket still sees each event once, in `seq` order.
    const CLIENTS: u64 = 8;
    const MUTATIONS: u64 = 200;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let url = sidecar.url("/api/projects");
        clients.push(tokio::spawn(async move {
            for i in 0..MUTATIONS / CLIENTS {
                let r = common::http(
                    Method::POST,
                    &url,
                    &[("content-type", "application/json")],
                    &format!(r#"{{"name":"p{c}-{i}"}}"#),
                )
                .await;
                assert_eq!(r.status, 201);
            }
        }));
    }
    for client in clients {
        client.await.expect("a client task");
    }
    for (n, ws) in sockets.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..MUTATIONS {
            let event = recv_json(ws).await;
            assert_eq!(event["type"], "project_created", "socket {n}: {event}");
            got.push(event["seq"].as_u64().expect("seq"));
        }
        let expected: Vec<u64> = (1..=MUTATIONS).collect();
        assert_eq!(got, expected, "socket {n} saw every event once, in order");
    }
    // Every socket got its events the fast way: straight from the fan-out, not through its task
    // (the upgraded connection is downcast to the server's own socket type for that).
    let logs = sidecar.proc.stderr();
    assert!(!logs.contains("without direct writes"), "{logs}");
    // Room messages cross loops too: every other member hears each one.
    // The join follows the `subscribed` reply; the presence snapshot is what says it is done.
    for ws in sockets.iter_mut() {
        subscribe(ws, "room:doc", None).await;
        while recv_json(ws).await["type"] != "presence" {}
    }
    send_json(
        &mut sockets[0],
        serde_json::json!({"op":"publish","channel":"room:doc","type":"cursor","data":{"x":1}}),
    )
    .await;
    for (n, ws) in sockets.iter_mut().enumerate().skip(1) {
        let frame = loop {
            let v = recv_json(ws).await;
            if v["type"] == "cursor" {
                break v;
            }
            let kind = v["type"].as_str().unwrap_or_default().to_owned();
            assert!(
                ["presence", "user_joined"].contains(&kind.as_str()),
                "socket {n}: unexpected {v}"
            );
        };
        assert_eq!(frame["data"]["x"], 1, "socket {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let upstream = start_upstream().await;
    // A long grace: with nothing in flight the process must not sit it out.
    let mut sidecar = Sidecar::start(upstream, "shutdown_grace: 10s\n").await;

    let readyz = sidecar.admin_url("/readyz");
    let deadline = Instant::now() + WAIT;
    loop {
        let status = probe(&readyz).await;
        if status == Some(StatusCode::OK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz is {status:?}, not 200, with the upstream up"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let ws_url = format!("ws://127.0.0.1:{}/api/ws", sidecar.public);
    let mut ws = connect(&ws_url, &[])
        .await
        .unwrap_or_else(|e| panic!("connect {ws_url}: {e}"));
    let welcome = recv_json(&mut ws).await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    // A kept-alive HTTP connection, idle between requests when the signal comes.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", sidecar.public))
        .await
        .expect("connect");
    idle.write_all(b"GET /api/projects HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // The whole answer: its head, then as many bytes as its Content-Length says.
    let complete = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer).to_ascii_lowercase();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        length.is_some_and(|n| body.len() >= n)
    };
    let mut answer = Vec::new();
    while !complete(&answer) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, idle.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }

    let sent = Instant::now();
    sidecar.proc.signal("TERM");
    assert_eq!(
        recv_close_code(&mut ws).await,
        1001,
        "close code on SIGTERM"
    );
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, idle.read(&mut buf))
        .await
        .expect("the idle connection was not closed on SIGTERM");
    assert_eq!(closed.expect("read"), 0, "bytes on the idle connection");
    // Answer the close like a browser does, until the server ends the stream.
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;

    let status = sidecar
        .proc
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("syncgate still runs 5s after SIGTERM with nothing in flight");
    println!("exited {:.2?} after SIGTERM: {status}", sent.elapsed());
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        probe(&sidecar.admin_url("/healthz")).await.is_none(),
        "the admin listener still answers after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_download_finish_while_readiness_is_503() {
    let upstream = start_upstream().await;
    let mut sidecar = Sidecar::start(upstream, "shutdown_grace: 20s\n").await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    // The response head and a first frame have arrived: the request is in flight for sure.
    const SIZE: u64 = 64 * MIB;
    let uri = sidecar.url(&format!("/api/big?bytes={SIZE}"));
    let resp = tokio::time::timeout(WAIT, client.get(uri.parse().expect("URL")))
        .await
        .expect("GET /api/big: no response head in time")
        .expect("GET /api/big failed");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0u64;
    let read_frame = async |body: &mut hyper::body::Incoming| {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("no body frame in time")?;
        let frame = frame.unwrap_or_else(|e| panic!("download broke: {e}"));
        Some(frame.data_ref().map_or(0, |d| d.len() as u64))
    };
    received += read_frame(&mut body).await.expect("a first frame");

    sidecar.proc.signal("TERM");

    let readyz = sidecar.admin_url("/readyz");
    let deadline = Instant::now() + WAIT;
    loop {
        let status = probe(&readyz).await;
        if status == Some(StatusCode::SERVICE_UNAVAILABLE) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz is {status:?} while draining, expected 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = probe(&sidecar.url("/api/projects")).await;
    println!("new request while draining: {fresh:?} (None = refused)");
    assert_ne!(
        fresh,
        Some(StatusCode::OK),
        "a new connection was served while draining"
    );

    while let Some(n) = read_frame(&mut body).await {
        received += n;
    }
    assert_eq!(received, SIZE, "the in-flight download was cut short");

    let status = sidecar
        .proc
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("syncgate still runs 5s after its last request finished");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_applies_new_rules_and_refuses_invalid_config() {
    let rule = |value: &str| {
        format!(
            "cache_control:\n  rules:\n    - path: \"^/api/projects\"\n      value: \"{value}\"\n"
        )
    };
    let upstream = start_upstream().await;
    let mut sidecar = Sidecar::start(upstream, &rule("private, max-age=1")).await;
    let projects = sidecar.url("/api/projects");
    assert_eq!(cache_control_of(&projects).await, "private, max-age=1");

    // A valid new file: applied after SIGHUP.
    sidecar.rewrite_config(&rule("private, max-age=2"));
    sidecar.proc.signal("HUP");
    let deadline = Instant::now() + WAIT;
    loop {
        let value = cache_control_of(&projects).await;
        if value == "private, max-age=2" {
            break;
        }
        assert_eq!(value, "private, max-age=1", "unexpected Cache-Control");
        assert!(
            Instant::now() < deadline,
            "the new rule did not apply within {WAIT:?} of SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sidecar.proc.wait_stderr("config reloaded", WAIT).await;

    // An invalid file: refused with a log line; the last good rules keep serving.
    sidecar.rewrite_config(
        "cache_control:\n  rules:\n    - path: \"^/api/([\"\n      value: \"private, max-age=3\"\n",
    );
    sidecar.proc.signal("HUP");
    sidecar.proc.wait_stderr("reload refused", WAIT).await;
    assert!(
        sidecar
            .proc
            .stderr()
            .contains("cache_control.rules[0].path"),
        "the refusal does not say what is wrong:\n{}",
        sidecar.proc.stderr()
    );
    assert_eq!(cache_control_of(&projects).await, "private, max-age=2");
    assert!(
        sidecar.proc.exited().is_none(),
        "syncgate exited on an invalid reload"
    );
    assert_eq!(
        probe(&sidecar.admin_url("/healthz")).await,
        Some(StatusCode::OK)
    );
}

// ---------------------------------------------------------------------------------------------
// tail
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_each_event_as_a_json_line() {
    let upstream = start_upstream().await;
    let sidecar = Sidecar::start(upstream, "").await;
    let mut tail = Proc::spawn(
        "syncgate tail",
        syncgate()
            .arg("tail")
            .arg("--url")
            .arg(format!("http://127.0.0.1:{}", sidecar.public))
            .arg("projects"),
        true,
    );
    tail.wait_stderr("subscribed to projects", WAIT).await;

    let reply = common::http(
        Method::POST,
        &sidecar.url("/api/projects"),
        &[("content-type", "application/json")],
        r#"{"name":"Apollo"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "POST /api/projects");
    let id = reply.json()["id"].to_string();

    let line = tail.next_stdout_line(WAIT).await;
    let event: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("tail printed a line that is not JSON ({e}): {line:?}"));
    assert_eq!(event["type"], "project_created", "{line}");
    assert_eq!(event["channel"], "projects", "{line}");
    assert_eq!(event["resource_id"], id.as_str(), "{line}");
    assert!(event["seq"].is_u64(), "{line}");
    assert!(!line.contains('\n'), "one event per line");

    // A second mutation: a second line, next seq.
    let reply = common::http(
        Method::DELETE,
        &sidecar.url(&format!("/api/projects/{id}")),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "DELETE /api/projects/{id}");
    let line = tail.next_stdout_line(WAIT).await;
    let second: Value = serde_json::from_str(&line).expect("second line is JSON");
    assert_eq!(second["type"], "project_deleted", "{line}");
    assert_eq!(
        second["seq"].as_u64(),
        event["seq"].as_u64().map(|s| s + 1),
        "{line}"
    );
}
