"""Fixtures that run the real stack on loopback: the demo FastAPI app, and syncgate in front of it.

Both processes are started once per test module on free ports of 127.0.0.1, waited for by polling
with a deadline (never a fixed sleep), and always stopped at teardown. When a test fails, the logs of
both processes are attached to its report. The syncgate binary comes from `$SYNCGATE_BIN`
(`scripts/test-all.sh` points it at `target/debug/syncgate`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "demo"
PUBLISH_TOKEN = "e2e-publish-token"
STARTUP_DEADLINE_S = 20.0
LOG_TAIL_CHARS = 6000

# Processes alive right now, so a failing test can show their logs.
_running: list[ManagedProcess] = []


@dataclass
class ManagedProcess:
    """A child process whose stdout and stderr go to one log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-LOG_TAIL_CHARS:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


@dataclass(frozen=True)
class Stack:
    """Where the running stack listens."""

    upstream_url: str  # the demo app, directly
    base_url: str  # syncgate's public listener: REST proxy and sockets
    ws_url: str  # the generic socket
    origin: str  # the same-host Origin a browser on base_url would send
    admin_url: str
    publish_token: str


def free_port() -> int:
    """A port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> ManagedProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    proc = ManagedProcess(name=name, popen=popen, log_path=log_path)
    _running.append(proc)
    return proc


def stop_process(proc: ManagedProcess) -> None:
    proc.stop()
    if proc in _running:
        _running.remove(proc)


def wait_until(description: str, check: Callable[[], bool], procs: list[ManagedProcess]) -> None:
    """Polls `check` until it is true; fails with the processes' logs on deadline or early exit."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                pytest.fail(
                    f"{proc.name} exited with code {proc.popen.returncode} while waiting for "
                    f"{description}\n--- {proc.name} log ---\n{proc.log()}",
                    pytrace=False,
                )
        if check():
            return
        time.sleep(0.05)
    logs = "\n".join(f"--- {p.name} log ---\n{p.log()}" for p in procs)
    pytest.fail(f"timed out after {STARTUP_DEADLINE_S}s waiting for {description}\n{logs}", pytrace=False)


def answers(url: str, expected_status: int = 200) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0, trust_env=False).status_code == expected_status
        except httpx.HTTPError:
            return False

    return check


def syncgate_config(listen: int, admin: int, upstream: int) -> str:
    # Keys as SPEC names them; `auth: header` lets a test act as any user with `X-User-Id`.
    return f"""\
listen: "127.0.0.1:{listen}"
admin_listen: "127.0.0.1:{admin}"
upstream:
  url: "http://127.0.0.1:{upstream}"
auth:
  mode: header
  header: {{ name: "X-User-Id" }}
publish:
  token_env: SYNCGATE_PUBLISH_TOKEN
"""


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SYNCGATE_CONFIG"}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def syncgate_bin() -> Path:
    value = os.environ.get("SYNCGATE_BIN")
    if not value:
        pytest.fail(
            "SYNCGATE_BIN is not set: build syncgate (cargo build) and run "
            "SYNCGATE_BIN=target/debug/syncgate .venv/bin/python -m pytest tests/e2e "
            "(scripts/test-all.sh does this)",
            pytrace=False,
        )
    path = Path(value).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"SYNCGATE_BIN={value} is not an executable file (did cargo build run?)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo FastAPI app on a free port; yields its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(DEMO_DIR)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    proc = start_process("demo-app", argv, tmp_path_factory.mktemp("demo-app"), child_env())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the demo app's /api/health", answers(f"{url}/api/health"), [proc])
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def stack(syncgate_bin: Path, demo_app: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """syncgate in front of the demo app, ready to proxy; yields where everything listens."""
    work = tmp_path_factory.mktemp("syncgate")
    listen, admin = free_port(), free_port()
    upstream_port = int(demo_app.rsplit(":", 1)[1])
    config = work / "syncgate.yaml"
    config.write_text(syncgate_config(listen, admin, upstream_port))
    env = child_env(SYNCGATE_PUBLISH_TOKEN=PUBLISH_TOKEN, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    proc = start_process("syncgate", [str(syncgate_bin), "--config", str(config)], work, env)
    base = f"http://127.0.0.1:{listen}"
    admin_url = f"http://127.0.0.1:{admin}"
    try:
        wait_until("syncgate's admin /healthz", answers(f"{admin_url}/healthz"), [proc])
        wait_until("the demo app through syncgate", answers(f"{base}/api/health"), [proc])
        yield Stack(
            upstream_url=demo_app,
            base_url=base,
            ws_url=f"ws://127.0.0.1:{listen}/api/ws",
            origin=base,
            admin_url=admin_url,
            publish_token=PUBLISH_TOKEN,
        )
    finally:
        stop_process(proc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Attaches the logs of the running processes to a failed test's report."""
    report: pytest.TestReport = yield
    if report.failed:
        for proc in _running:
            report.sections.append((f"{proc.name} log (last {LOG_TAIL_CHARS} chars)", proc.log()))
    return report
