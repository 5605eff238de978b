// The demo's entry point: exactly the three wrappers an app adds, then the page.
import { RealtimeSyncProvider } from "@syncgate/client/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";

// staleTime 0: events say when data changed, so cached data is always refetched on invalidation.
const queryClient = new QueryClient({
  defaultOptions: { queries: { staleTime: 0, retry: 1, refetchOnWindowFocus: false } },
});

// The demo's sidecar requires a signed-in user on sockets (auth.mode upstream): a first visit
// signs in as Alice, so the page is live at once; the menu switches to Bob.
if (!/(?:^|; )session=[^;]+/.test(document.cookie)) {
  document.cookie = "session=alice-token; path=/; SameSite=Lax";
}

const root = document.getElementById("root");
if (!root) throw new Error("no #root element");
createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <RealtimeSyncProvider>
        <App />
      </RealtimeSyncProvider>
    </QueryClientProvider>
  </StrictMode>,
);
