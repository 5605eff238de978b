/**
 * `useWebSocket(path, options)`: a self-reconnecting socket for one component, for endpoints the
 * generic client does not cover. Frames are parsed as JSON; `send` takes a string or a value.
 */

import { useCallback, useEffect, useRef, useState } from "react";
import { socketUrl } from "../environment.js";
import { ManagedSocket } from "../socket.js";

export interface UseWebSocketOptions<T> {
  onMessage?: (message: T) => void;
  onOpen?: () => void;
  onClose?: (code: number, reason: string) => void;
  /** Reconnect after a drop, with backoff and jitter (default true). */
  autoReconnect?: boolean;
  /** Ceiling of the first retry's delay in ms, doubling up to 10 s (default 250). */
  reconnectInterval?: number;
  /** Bearer token, sent as `?access_token=` (browsers cannot set socket headers). */
  token?: string | null;
  /** False: do not connect (yet). Default true. */
  enabled?: boolean;
}

export interface UseWebSocketResult<T> {
  isConnected: boolean;
  /** A string is sent as is, anything else as JSON. False when not connected. */
  send: (message: unknown) => boolean;
  lastMessage: T | null;
  reconnect: () => void;
}

export function useWebSocket<T = unknown>(
  path: string,
  options: UseWebSocketOptions<T> = {},
): UseWebSocketResult<T> {
  const { autoReconnect = true, reconnectInterval = 250, token = null, enabled = true } = options;
  const [isConnected, setConnected] = useState(false);
  const [lastMessage, setLastMessage] = useState<T | null>(null);
  const socketRef = useRef<ManagedSocket | null>(null);
  // Callbacks live in a ref so that new closures on every render do not reconnect the socket.
  const callbacks = useRef(options);
  callbacks.current = options;

  useEffect(() => {
    if (!enabled) return undefined;
    const socket = new ManagedSocket({
      url: socketUrl(path, token),
      autoReconnect,
      backoff: { initialMs: reconnectInterval },
      onOpen: () => callbacks.current.onOpen?.(),
      onStatus: (status) => setConnected(status === "open"),
      onClose: (code, reason) => callbacks.current.onClose?.(code, reason),
      onMessage: (data) => {
        let message: T;
        try {
          message = JSON.parse(String(data)) as T;
        } catch {
          console.warn("syncgate: ignoring a frame that is not JSON:", String(data).slice(0, 200));
          return;
        }
        socket.markHealthy();
        setLastMessage(message);
        callbacks.current.onMessage?.(message);
      },
    });
    socketRef.current = socket;
    socket.start();
    return () => {
      socketRef.current = null;
      socket.close();
      setConnected(false);
    };
  }, [path, token, autoReconnect, reconnectInterval, enabled]);

  const send = useCallback((message: unknown) => {
    const text = typeof message === "string" ? message : JSON.stringify(message);
    return socketRef.current?.send(text) ?? false;
  }, []);
  const reconnect = useCallback(() => socketRef.current?.reconnect(), []);

  return { isConnected, send, lastMessage, reconnect };
}
