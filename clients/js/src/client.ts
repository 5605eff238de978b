/**
 * `createSyncClient`: one generic socket to the sidecar (`/api/ws`), the channels this page follows,
 * and resume. After every reconnect each channel is subscribed again with `since` = the last seq seen,
 * so nothing published while the socket was down is missed; when the sidecar cannot replay the gap it
 * answers `reset` and listeners refetch everything.
 *
 * `client.fetch` closes the fetch-then-subscribe race: it sends `X-Sync-Client` (so the sidecar does
 * not echo this tab's own mutations back) and reads `X-Sync-Position` from responses, subscribing each
 * channel from the exact position the data reflects.
 */

import type { BackoffOptions } from "./backoff.js";
import { Channels } from "./channels.js";
import { type SocketFactory, type WakeSignals, socketUrl } from "./environment.js";
import { type SyncEvent, parseServerFrame } from "./frames.js";
import { RecentIds } from "./invalidation.js";
import { parsePosition } from "./position.js";
import { ManagedSocket, type SocketStatus } from "./socket.js";

export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "closed";

export interface SyncClientOptions {
  /** The generic socket: a path (`/api/ws`, the default) or an absolute http(s)/ws(s) URL. */
  url?: string;
  /** A bearer token: sent as `Authorization` by `fetch` and as `?access_token=` on the socket. */
  token?: string | null;
  /** Query parameter name for the token on the socket URL (the sidecar's `auth.token_query_param`). */
  tokenParam?: string;
  /** Subscribe to the channels named by `X-Sync-Position` on `fetch` responses (default true). */
  followPositions?: boolean;
  backoff?: Partial<BackoffOptions>;
  socketFactory?: SocketFactory;
  wakeSignals?: WakeSignals | null;
  random?: () => number;
  fetch?: typeof globalThis.fetch;
  logger?: Pick<Console, "warn">;
}

export interface SubscribeOptions {
  /** Resume after this seq (the events after it are replayed); default: live from now. */
  since?: number;
  /** Called for each new event of this channel (replays included, duplicates not). */
  onEvent?: (event: SyncEvent) => void;
}

export interface Subscription {
  readonly channel: string;
  /** Resolves once the sidecar has acknowledged the subscription. */
  readonly ready: Promise<void>;
  unsubscribe(): void;
}

export interface ServerError {
  code: string;
  message: string;
  ref: string | null;
}

export interface SyncClient {
  /** The sidecar's id for the current connection; null while disconnected. Changes on reconnect. */
  readonly clientId: string | null;
  /** The user the sidecar identified on the current connection, null when anonymous. */
  readonly user: string | null;
  readonly status: ConnectionStatus;
  subscribe(channel: string, options?: SubscribeOptions): Subscription;
  /** Last seq accounted for on `channel`, null when unknown. */
  position(channel: string): number | null;
  /** Every new event once, even when it reached several subscribed channels (deduped by `id`). */
  onEvent(listener: (event: SyncEvent) => void): () => void;
  /** The sidecar could not replay what `channel` missed: refetch everything that depends on it. */
  onReset(listener: (channel: string) => void): () => void;
  onStatus(listener: (status: ConnectionStatus) => void): () => void;
  /** `welcome` received: a new `clientId` and `user`. */
  onWelcome(listener: (info: { clientId: string; user: string | null }) => void): () => void;
  onServerError(listener: (error: ServerError) => void): () => void;
  /** `fetch` that sends `X-Sync-Client` and subscribes from `X-Sync-Position`. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Broadcast into a joined `room:` channel; false when not connected. */
  publish(channel: string, type: string, data?: unknown): boolean;
  /** Drop the connection and connect again now (subscriptions resume). */
  reconnect(): void;
  close(): void;
}

class Listeners<T> {
  private readonly set = new Set<(value: T) => void>();
  add(listener: (value: T) => void): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }
  emit(value: T, logger: Pick<Console, "warn">): void {
    for (const listener of [...this.set]) {
      try {
        listener(value);
      } catch (err) {
        logger.warn("syncgate: a listener threw", err);
      }
    }
  }
}

export function createSyncClient(options: SyncClientOptions = {}): SyncClient {
  const logger = options.logger ?? console;
  const token = options.token ?? null;
  const followPositions = options.followPositions ?? true;
  const channels = new Channels();
  const seen = new RecentIds();
  const channelListeners = new Map<string, Set<(event: SyncEvent) => void>>();
  const events = new Listeners<SyncEvent>();
  const resets = new Listeners<string>();
  const statuses = new Listeners<ConnectionStatus>();
  const welcomes = new Listeners<{ clientId: string; user: string | null }>();
  const errors = new Listeners<ServerError>();

  let clientId: string | null = null;
  let user: string | null = null;
  let status: ConnectionStatus = "connecting";

  const setStatus = (next: ConnectionStatus) => {
    if (next === status) return;
    status = next;
    statuses.emit(next, logger);
  };

  const sendJson = (frame: object): boolean => socket.send(JSON.stringify(frame));

  const sendSubscribe = (channel: string) => {
    if (clientId === null) return; // sent with every other channel after the next welcome
    const frame = channels.subscribeFrame(channel);
    if (frame) sendJson(frame);
  };

  const sendUnsubscribe = (channel: string) => {
    if (clientId !== null) sendJson({ op: "unsubscribe", channel });
  };

  const onMessage = (data: unknown) => {
    const frame = parseServerFrame(data);
    switch (frame.kind) {
      case "invalid":
        logger.warn(`syncgate: ignoring a bad frame (${frame.reason}):`, String(data).slice(0, 200));
        return;
      case "welcome":
        socket.markHealthy();
        clientId = frame.clientId;
        user = frame.user;
        for (const channel of channels.names()) sendSubscribe(channel);
        setStatus("open");
        welcomes.emit({ clientId: frame.clientId, user: frame.user }, logger);
        return;
      case "subscribed":
        if (channels.subscribed(frame.channel, frame.seq, frame.recovered) === "renumbered") {
          resets.emit(frame.channel, logger);
        }
        return;
      case "reset":
        if (channels.has(frame.channel)) resets.emit(frame.channel, logger);
        return;
      case "error":
        logger.warn(`syncgate: server error ${frame.code} on ${frame.ref ?? "?"}: ${frame.message}`);
        errors.emit({ code: frame.code, message: frame.message, ref: frame.ref }, logger);
        return;
      case "unsubscribed":
      case "pong":
        return;
      case "event": {
        const { event } = frame;
        const verdict = channels.accept(event);
        if (verdict === "old") return;
        if (verdict === "renumbered") resets.emit(event.channel, logger);
        for (const listener of [...(channelListeners.get(event.channel) ?? [])]) {
          try {
            listener(event);
          } catch (err) {
            logger.warn("syncgate: a listener threw", err);
          }
        }
        if (seen.add(event.id)) events.emit(event, logger);
        return;
      }
    }
  };

  const onSocketStatus = (s: SocketStatus) => {
    if (s === "waiting") setStatus("reconnecting");
    if (s === "closed") setStatus("closed");
  };

  const socket = new ManagedSocket({
    url: socketUrl(options.url ?? "/api/ws", token, options.tokenParam),
    backoff: options.backoff,
    socketFactory: options.socketFactory,
    wakeSignals: options.wakeSignals,
    random: options.random,
    onMessage,
    onClose: () => {
      clientId = null;
      channels.disconnected();
    },
    onStatus: onSocketStatus,
  });

  const fetchImpl = options.fetch ?? ((...args: Parameters<typeof fetch>) => globalThis.fetch(...args));

  const follow = (header: string | null) => {
    for (const [channel, seq] of parsePosition(header)) {
      const { isNew, evicted } = channels.follow(channel, seq);
      for (const name of evicted) sendUnsubscribe(name);
      if (isNew) sendSubscribe(channel);
    }
  };

  const client: SyncClient = {
    get clientId() {
      return clientId;
    },
    get user() {
      return user;
    },
    get status() {
      return status;
    },

    subscribe(channel, subscribeOptions = {}) {
      const { since, onEvent } = subscribeOptions;
      if (onEvent) {
        let set = channelListeners.get(channel);
        if (!set) channelListeners.set(channel, (set = new Set()));
        set.add(onEvent);
      }
      if (channels.add(channel, since)) sendSubscribe(channel);
      let active = true;
      return {
        channel,
        ready: channels.whenAcked(channel),
        unsubscribe() {
          if (!active) return;
          active = false;
          if (onEvent) channelListeners.get(channel)?.delete(onEvent);
          if (channels.release(channel)) sendUnsubscribe(channel);
        },
      };
    },

    position: (channel) => channels.lastSeq(channel),
    onEvent: (listener) => events.add(listener),
    onReset: (listener) => resets.add(listener),
    onStatus: (listener) => statuses.add(listener),
    onWelcome: (listener) => welcomes.add(listener),
    onServerError: (listener) => errors.add(listener),

    async fetch(input, init = {}) {
      const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
      if (clientId !== null) headers.set("X-Sync-Client", clientId);
      if (token && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${token}`);
      const response = await fetchImpl(input, { ...init, headers });
      if (followPositions && response.ok) follow(response.headers.get("X-Sync-Position"));
      return response;
    },

    publish(channel, type, data = null) {
      return clientId !== null && sendJson({ op: "publish", channel, type, data });
    },

    reconnect: () => socket.reconnect(),

    close() {
      socket.close();
      clientId = null;
    },
  };

  socket.start();
  return client;
}
