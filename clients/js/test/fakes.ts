/** Test doubles: a scriptable WebSocket, manual wake signals, and a quiet logger that records. */

import { vi } from "vitest";
import type { SocketLike, WakeSignals } from "../src/environment.js";

export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  readonly sent: string[] = [];
  closedByClient = false;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(data);
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  // --- driven by the test ---
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: unknown): void {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  sentFrames(): Record<string, unknown>[] {
    return this.sent.map((text) => JSON.parse(text) as Record<string, unknown>);
  }
}

export class FakeNetwork {
  readonly sockets: FakeSocket[] = [];
  readonly factory = (url: string) => {
    const socket = new FakeSocket(url);
    this.sockets.push(socket);
    return socket;
  };
  get last(): FakeSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error("no socket was opened");
    return socket;
  }
  /** Opens the newest socket and sends the welcome, as the sidecar does. */
  accept(clientId = `c${this.sockets.length}`, user: string | null = null): FakeSocket {
    const socket = this.last;
    socket.open();
    socket.receive({ op: "welcome", client_id: clientId, user });
    return socket;
  }
}

export class ManualWake implements WakeSignals {
  private listeners = new Set<() => void>();
  onWake(wake: () => void): () => void {
    this.listeners.add(wake);
    return () => this.listeners.delete(wake);
  }
  fire(): void {
    for (const wake of this.listeners) wake();
  }
}

export function recordingLogger() {
  return { warn: vi.fn() };
}

export function event(channel: string, seq: number, overrides: Record<string, unknown> = {}) {
  return {
    type: "project_updated",
    channel,
    seq,
    id: `ev-${channel}-${seq}`,
    resource: "projects",
    resource_id: "1",
    action: "updated",
    invalidate: [["projects"], ["project", "1"]],
    data: null,
    actor: null,
    ts: 1764000000123,
    ...overrides,
  };
}
