/**
 * One socket per tab: providers (and React StrictMode's mount–unmount–mount) share one client per
 * URL and token, closed a moment after its last user lets go.
 */

import { type SyncClient, type SyncClientOptions, createSyncClient } from "../client.js";

interface Entry {
  client: SyncClient;
  users: number;
  closeTimer: ReturnType<typeof setTimeout> | null;
}

const clients = new Map<string, Entry>();

function keyOf(options: SyncClientOptions): string {
  return JSON.stringify([options.url ?? "/api/ws", options.token ?? null, options.tokenParam ?? null]);
}

/** The tab's client for these options, created on first use (safe to call during render). */
export function sharedClient(options: SyncClientOptions): SyncClient {
  const key = keyOf(options);
  let entry = clients.get(key);
  if (!entry) {
    entry = { client: createSyncClient(options), users: 0, closeTimer: null };
    clients.set(key, entry);
  }
  return entry.client;
}

/** Registers one user of `client`; the returned function releases it. */
export function retainClient(client: SyncClient): () => void {
  const entry = [...clients.values()].find((e) => e.client === client);
  if (!entry) return () => {};
  entry.users += 1;
  if (entry.closeTimer !== null) clearTimeout(entry.closeTimer);
  entry.closeTimer = null;
  return () => {
    entry.users -= 1;
    if (entry.users > 0) return;
    entry.closeTimer = setTimeout(() => {
      if (entry.users > 0) return;
      for (const [key, e] of clients) if (e === entry) clients.delete(key);
      entry.client.close();
    }, 1_000);
  };
}
