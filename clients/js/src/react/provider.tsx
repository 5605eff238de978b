/**
 * `<RealtimeSyncProvider>`: put it inside `QueryClientProvider` once, and every event the sidecar
 * delivers invalidates the queries its keys cover; a `reset` invalidates everything.
 */

import { type QueryClient, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useEffect, useMemo } from "react";
import type { SyncClient } from "../client.js";
import { invalidationKeys, keyCovers } from "../invalidation.js";
import { SyncClientContext } from "./context.js";
import { retainClient, sharedClient } from "./shared-client.js";

export interface RealtimeSyncProviderProps {
  children?: ReactNode;
  /** The generic socket path or URL (default `/api/ws`). Ignored when `client` is given. */
  url?: string;
  /** Bearer token for the socket (`?access_token=`) and `client.fetch`. Ignored with `client`. */
  token?: string | null;
  /** A client you created yourself with `createSyncClient` (you close it). */
  client?: SyncClient;
  /** Channels to follow even if no GET names them in `X-Sync-Position` (live from now). */
  channels?: readonly string[];
  /** Default: the one from `QueryClientProvider`. */
  queryClient?: QueryClient;
}

/**
 * Invalidates what `event`'s keys cover; also what `useMutationWithInvalidation` uses.
 *
 * A fetch already in flight may have been answered before the change, so it is cancelled and
 * made again. TanStack Query does that by itself only for queries that already hold data; a
 * query on its first load would otherwise take the in-flight answer, and the event would be
 * spent on it (a replayed event arriving while the first list is still being read, for one).
 */
export async function invalidateKeys(
  queryClient: QueryClient,
  keys: readonly (readonly (string | number)[])[],
): Promise<void> {
  if (keys.length === 0) return;
  const covered = {
    predicate: (query: { queryKey: readonly unknown[] }) => keys.some((key) => keyCovers(key, query.queryKey)),
  };
  await queryClient.cancelQueries({ ...covered, fetchStatus: "fetching" });
  await queryClient.invalidateQueries(covered);
}

export function RealtimeSyncProvider(props: RealtimeSyncProviderProps) {
  const { children, url, token, client: given, channels } = props;
  const queryClient = useQueryClient(props.queryClient);
  const client = useMemo(() => given ?? sharedClient({ url, token }), [given, url, token]);

  useEffect(() => (given ? undefined : retainClient(client)), [client, given]);

  useEffect(() => {
    const offEvent = client.onEvent((event) => {
      void invalidateKeys(queryClient, invalidationKeys(event));
    });
    const offReset = client.onReset(() => {
      void queryClient.invalidateQueries();
    });
    return () => {
      offEvent();
      offReset();
    };
  }, [client, queryClient]);

  const channelList = (channels ?? []).join("\n");
  useEffect(() => {
    if (!channelList) return undefined;
    const subs = channelList.split("\n").map((channel) => client.subscribe(channel));
    return () => subs.forEach((sub) => sub.unsubscribe());
  }, [client, channelList]);

  return <SyncClientContext.Provider value={client}>{children}</SyncClientContext.Provider>;
}
