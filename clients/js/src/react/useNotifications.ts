/**
 * `useNotifications()`: the signed-in user's notifications list, kept live over the tab's one
 * socket. It subscribes to the private `user:{id}` channel first and fetches the list only once the
 * subscription is acknowledged, so a notification created in between cannot be missed; each
 * `notification_created` event then invalidates `["notifications"]` through the provider.
 */

import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import type { SyncEvent } from "../frames.js";
import { useSyncClient, useSyncStatus } from "./context.js";

export interface UseNotificationsOptions {
  /** Where the list comes from (default `/api/notifications`). */
  path?: string;
  /** Default `["notifications"]`: the key the sidecar's events invalidate. */
  queryKey?: readonly unknown[];
  /** The private channel prefix (the sidecar's `channels.user_prefix`, default `user:`). */
  userPrefix?: string;
  onNotification?: (event: SyncEvent) => void;
}

export interface UseNotificationsResult<T> {
  notifications: T[] | undefined;
  /** Entries whose `read` is not true. */
  unreadCount: number;
  /** The newest event on the user's channel. */
  lastMessage: SyncEvent | null;
  user: string | null;
  isLoading: boolean;
}

export function useNotifications<T = { id: unknown; read?: boolean }>(
  options: UseNotificationsOptions = {},
): UseNotificationsResult<T> {
  const { path = "/api/notifications", queryKey = ["notifications"], userPrefix = "user:" } = options;
  const client = useSyncClient();
  const { user } = useSyncStatus();
  const [lastMessage, setLastMessage] = useState<SyncEvent | null>(null);
  const [readyFor, setReadyFor] = useState<string | null>(null);
  const onNotification = options.onNotification;

  useEffect(() => {
    if (user === null) return undefined;
    let live = true;
    const sub = client.subscribe(`${userPrefix}${user}`, {
      onEvent: (event) => {
        setLastMessage(event);
        onNotification?.(event);
      },
    });
    void sub.ready.then(() => {
      if (live) setReadyFor(user);
    });
    return () => {
      live = false;
      sub.unsubscribe();
    };
  }, [client, user, userPrefix, onNotification]);

  const query = useQuery({
    queryKey: [...queryKey, user],
    enabled: user !== null && readyFor === user,
    queryFn: async (): Promise<T[]> => {
      const response = await client.fetch(path, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`GET ${path}: ${response.status}`);
      return (await response.json()) as T[];
    },
  });

  const notifications = user === null ? undefined : query.data;
  const unreadCount = (notifications ?? []).filter(
    (n) => (n as { read?: unknown }).read !== true,
  ).length;
  return { notifications, unreadCount, lastMessage, user, isLoading: query.isLoading };
}
