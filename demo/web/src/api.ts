// The demo API, called through `client.fetch` so that every request carries `X-Sync-Client` and
// every list subscribes from the `X-Sync-Position` it was read at.
import type { SyncClient } from "@syncgate/client";
import { useSyncClient } from "@syncgate/client/react";
import { useMemo } from "react";

export interface Project {
  id: number;
  name: string;
  description: string | null;
  owner_id: string | null;
}

export interface Notification {
  id: number;
  user_id: string;
  title: string;
  read: boolean;
}

async function call<T>(client: SyncClient, method: string, path: string, body?: unknown): Promise<T> {
  const response = await client.fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? undefined : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
  return (await response.json()) as T;
}

export function useApi() {
  const client = useSyncClient();
  return useMemo(
    () => ({
      listProjects: () => call<Project[]>(client, "GET", "/api/projects"),
      createProject: (name: string) => call<Project>(client, "POST", "/api/projects", { name }),
      renameProject: (id: number, name: string) => call<Project>(client, "PATCH", `/api/projects/${id}`, { name }),
      deleteProject: (id: number) => call<Project>(client, "DELETE", `/api/projects/${id}`),
      notify: (userId: string, title: string) =>
        call<Notification>(client, "POST", "/api/notifications", { user_id: userId, title }),
    }),
    [client],
  );
}
