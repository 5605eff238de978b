/**
 * A WebSocket that keeps itself connected: reconnects after every drop with exponential backoff and
 * jitter, and at once when the network comes back or the tab becomes visible. It knows nothing of
 * the protocol spoken over it; `createSyncClient`, `useWebSocket` and `useRoom` all build on it.
 */

import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelay } from "./backoff.js";
import {
  OPEN,
  type SocketFactory,
  type SocketLike,
  type WakeSignals,
  browserWakeSignals,
  defaultSocketFactory,
} from "./environment.js";

export type SocketStatus = "connecting" | "open" | "waiting" | "closed";

export interface ManagedSocketOptions {
  url: string;
  /** Reconnect after a drop (default true). */
  autoReconnect?: boolean;
  backoff?: Partial<BackoffOptions>;
  socketFactory?: SocketFactory;
  wakeSignals?: WakeSignals | null;
  random?: () => number;
  onOpen?: () => void;
  onMessage?: (data: unknown) => void;
  onClose?: (code: number, reason: string) => void;
  onStatus?: (status: SocketStatus) => void;
}

/** A connection that stayed up this long counts as healthy even if it never received a frame. */
const HEALTHY_AFTER_MS = 5_000;

export class ManagedSocket {
  private socket: SocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private openedAt = 0;
  private currentStatus: SocketStatus = "closed";
  private stopped = false;
  /** Delay of the reconnect now pending, for display; null when none is. */
  nextRetryMs: number | null = null;
  private readonly backoff: BackoffOptions;
  private readonly factory: SocketFactory;
  private readonly unwake: () => void;

  constructor(private readonly options: ManagedSocketOptions) {
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.factory = options.socketFactory ?? defaultSocketFactory();
    const wake = options.wakeSignals === undefined ? browserWakeSignals() : options.wakeSignals;
    this.unwake = wake ? wake.onWake(() => this.wake()) : () => {};
  }

  /** Opens the first connection; separate from the constructor so callers finish wiring first. */
  start(): void {
    if (!this.stopped && this.currentStatus === "closed") this.connect();
  }

  get status(): SocketStatus {
    return this.currentStatus;
  }

  /** Sends a text frame; false when the socket is not open (nothing is queued). */
  send(text: string): boolean {
    if (!this.socket || this.socket.readyState !== OPEN) return false;
    this.socket.send(text);
    return true;
  }

  /** Marks the connection as working (the peer spoke), so the next drop retries quickly again. */
  markHealthy(): void {
    this.attempt = 0;
  }

  /** Drops the current connection, if any, and connects again now. */
  reconnect(): void {
    if (this.stopped) return;
    this.attempt = 0;
    this.dropSocket(4000, "reconnect requested");
    this.connect();
  }

  /** Closes for good: no more reconnects. */
  close(): void {
    this.stopped = true;
    this.clearTimer();
    this.unwake();
    this.dropSocket(1000, "closed by client");
    this.setStatus("closed");
  }

  private wake(): void {
    // Only a client that is waiting to retry has anything to gain from the network coming back.
    if (this.stopped || this.currentStatus !== "waiting") return;
    this.attempt = 0;
    this.connect();
  }

  private connect(): void {
    this.clearTimer();
    this.setStatus("connecting");
    let socket: SocketLike;
    try {
      socket = this.factory(this.options.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.openedAt = Date.now();
      this.setStatus("open");
      this.options.onOpen?.();
    };
    socket.onmessage = (ev) => {
      if (this.socket !== socket) return;
      this.options.onMessage?.(ev.data);
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.openedAt && Date.now() - this.openedAt >= HEALTHY_AFTER_MS) this.attempt = 0;
      this.openedAt = 0;
      this.options.onClose?.(ev.code, ev.reason);
      if (this.stopped) return;
      if (this.options.autoReconnect === false) this.setStatus("closed");
      else this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    const delay = backoffDelay(this.attempt, this.backoff, this.options.random);
    this.attempt += 1;
    this.nextRetryMs = delay;
    this.setStatus("waiting");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(code, reason);
    } catch {
      // Already closing; nothing to do.
    }
    this.options.onClose?.(code, reason);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.nextRetryMs = null;
  }

  private setStatus(status: SocketStatus): void {
    if (status === this.currentStatus) return;
    this.currentStatus = status;
    this.options.onStatus?.(status);
  }
}
