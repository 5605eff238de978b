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
