/**
 * The few browser facilities the client touches, behind small interfaces so that tests (and
 * non-browser runtimes) can supply their own: the WebSocket constructor, and the `online` /
 * `visibilitychange` signals that make a waiting client reconnect at once.
 */

/** The subset of the DOM WebSocket the client uses. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = (url: string) => SocketLike;

/** Where "the network is back" and "the tab is visible again" come from. */
export interface WakeSignals {
  /** Calls `wake` when connectivity or visibility returns; returns an unsubscribe function. */
  onWake(wake: () => void): () => void;
}

export const OPEN = 1;

export function defaultSocketFactory(): SocketFactory {
  const Ctor = (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
  if (!Ctor) {
    throw new Error("syncgate: no WebSocket in this runtime; pass `socketFactory` to the client");
  }
  return (url) => new Ctor(url);
}

/** `online` on window and `visibilitychange` to visible on document, when they exist. */
export function browserWakeSignals(): WakeSignals {
  return {
    onWake(wake) {
      const win = (globalThis as { window?: EventTarget }).window;
      const doc = (globalThis as { document?: EventTarget & { visibilityState?: string } }).document;
      const onVisibility = () => {
        if (doc?.visibilityState === "visible") wake();
      };
      win?.addEventListener("online", wake);
      doc?.addEventListener("visibilitychange", onVisibility);
      return () => {
        win?.removeEventListener("online", wake);
        doc?.removeEventListener("visibilitychange", onVisibility);
      };
    },
  };
}

/** Turns `/api/ws` or `http(s)://…` into a `ws(s)://` URL, adding the token as a query parameter. */
export function socketUrl(url: string, token?: string | null, tokenParam = "access_token"): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const resolved = base ? new URL(url, base) : new URL(url);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  // Browsers cannot set headers on a WebSocket, so a bearer token travels in the query string.
  if (token) resolved.searchParams.set(tokenParam, token);
  return resolved.toString();
}
