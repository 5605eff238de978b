/**
 * The real stack on loopback for browser tests: the demo FastAPI app (uvicorn from the repo's
 * .venv) and the syncgate binary in front of it, each on a free port of 127.0.0.1, each stopped by
 * PID when the test file ends. The sidecar can be killed and restarted on the same port.
 *
 * The sidecar runs with `auth.mode: upstream`: the demo logins (a `session` cookie) are checked by
 * the demo API's /api/auth/me, as in `scripts/demo.sh`.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const SYNCGATE_BIN = process.env.SYNCGATE_BIN ?? join(REPO, "target/debug/syncgate");
export const PYTHON = process.env.SYNCGATE_PYTHON ?? join(REPO, ".venv/bin/python");

const STARTUP_MS = 20_000;
const running = new Set<ChildProcess>();
// Last resort if a test file crashes before its afterAll: never leave a process behind.
process.on("exit", () => {
  for (const child of running) if (child.pid && child.exitCode === null) child.kill("SIGKILL");
});

export class Proc {
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {}

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(tail = 4000): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8").slice(-tail) : "";
  }

  /** Sends `signal` to the PID and waits for the exit (SIGKILL after 5 s). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((done) => this.child.once("exit", () => done()));
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
    running.delete(this.child);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

function spawnLogged(name: string, logDir: string, command: string, args: string[], env = {}): Proc {
  const logPath = join(logDir, `${name}.log`);
  const fd = openSync(logPath, "a");
  const child = spawn(command, args, {
    cwd: REPO,
    stdio: ["ignore", fd, fd],
    env: { ...process.env, ...env },
  });
  closeSync(fd);
  running.add(child);
  return new Proc(name, child, logPath);
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    return response.ok;
  } catch {
    return false;
  }
}

/** Polls `url` every 10 ms until it answers 2xx; throws with the logs if a process dies first. */
export async function waitForHttp(url: string, procs: Proc[], timeoutMs = STARTUP_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const proc of procs) {
      if (!proc.alive) throw new Error(`${proc.name} exited while waiting for ${url}:\n${proc.log()}`);
    }
    if (await answers(url)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`nothing answered ${url} within ${timeoutMs} ms\n${procs.map((p) => p.log()).join("\n")}`);
}

export type AuthMode = "upstream" | "none";

function sidecarConfig(port: number, adminPort: number, apiPort: number, auth: AuthMode): string {
  const authBlock =
    auth === "upstream"
      ? `auth:\n  mode: upstream\n  upstream: { path: "/api/auth/me", user_id: "/id", cache_ttl: 30s }\n`
      : `auth:\n  mode: none\n`;
  return `listen: "127.0.0.1:${port}"
admin_listen: "127.0.0.1:${adminPort}"
upstream: { url: "http://127.0.0.1:${apiPort}" }
${authBlock}rooms:
  authorize:
    - room: "^project:(?P<id>.+)$"
      path: "/api/projects/{id}"
  client_publish: true
events:
  exclude_origin: connection
log: { format: text }
`;
}

export class Stack {
  sidecar!: Proc;
  private configPath = "";
  private restarts = 0;

  private constructor(
    readonly logDir: string,
    readonly api: Proc,
    readonly apiUrl: string,
    readonly port: number,
    readonly adminPort: number,
  ) {}

  /** The public URL: pages load from here, through the sidecar. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<Stack> {
    for (const [what, path] of [["syncgate binary (cargo build)", SYNCGATE_BIN], ["python venv", PYTHON]]) {
      if (!existsSync(path!)) throw new Error(`missing ${what}: ${path}`);
    }
    const logDir = mkdtempSync(join(tmpdir(), "syncgate-e2e-"));
    const apiPort = await freePort();
    const api = spawnLogged("api", logDir, PYTHON, [
      "-m", "uvicorn", "app:app", "--app-dir", "demo", "--host", "127.0.0.1", "--port", String(apiPort),
      "--log-level", "warning",
    ]);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    await waitForHttp(`${apiUrl}/api/health`, [api]);

    const port = await freePort();
    const adminPort = await freePort();
    const stack = new Stack(logDir, api, apiUrl, port, adminPort);
    stack.configPath = join(logDir, "syncgate-upstream.yaml");
    writeFileSync(stack.configPath, sidecarConfig(port, adminPort, apiPort, "upstream"));
    try {
      await stack.startSidecar();
      return stack;
    } catch (err) {
      await api.stop();
      throw err;
    }
  }

  /** Starts the sidecar (again) on the same ports; resolves when it proxies the API. */
  async startSidecar(): Promise<void> {
    this.sidecar = spawnLogged(`syncgate-${this.restarts++}`, this.logDir, SYNCGATE_BIN, ["--config", this.configPath], {
      RUST_LOG: "info",
    });
    await waitForHttp(`${this.url}/api/health`, [this.sidecar, this.api]);
  }

  /** SIGKILL: the sidecar vanishes without closing its sockets, like a crashed process. */
  async killSidecar(): Promise<void> {
    await this.sidecar.stop("SIGKILL");
  }

  logs(): string {
    return [this.api, this.sidecar].map((p) => `--- ${p.name} ---\n${p.log()}`).join("\n");
  }

  async stop(): Promise<void> {
    await this.sidecar?.stop();
    await this.api.stop();
  }
}

/** JSON through the API directly (no sidecar: no event) or through the sidecar. */
export async function api<T>(base: string, method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}
