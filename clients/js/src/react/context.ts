/** The React context that carries the tab's `SyncClient`, and hooks to read it. */

import { createContext, useContext, useSyncExternalStore } from "react";
import type { ConnectionStatus, SyncClient } from "../client.js";

export const SyncClientContext = createContext<SyncClient | null>(null);

/** The client of the nearest `<RealtimeSyncProvider>`. */
export function useSyncClient(): SyncClient {
  const client = useContext(SyncClientContext);
  if (!client) throw new Error("syncgate: wrap your app in <RealtimeSyncProvider>");
  return client;
}

export interface SyncStatus {
  status: ConnectionStatus;
  isConnected: boolean;
  clientId: string | null;
  user: string | null;
}

/** Connection status, client id and user of the tab's socket; re-renders when they change. */
export function useSyncStatus(): SyncStatus {
  const client = useSyncClient();
  const subscribe = (notify: () => void) => {
    const offStatus = client.onStatus(notify);
    const offWelcome = client.onWelcome(notify);
    return () => {
      offStatus();
      offWelcome();
    };
  };
  const status = useSyncExternalStore(subscribe, () => client.status, () => client.status);
  const clientId = useSyncExternalStore(subscribe, () => client.clientId, () => null);
  const user = useSyncExternalStore(subscribe, () => client.user, () => null);
  return { status, isConnected: status === "open", clientId, user };
}
