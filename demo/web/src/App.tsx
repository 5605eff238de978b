// The demo page: who you are, the projects list, notifications and a project room.
import { useSyncClient, useSyncStatus } from "@syncgate/client/react";
import { useEffect, useState } from "react";
import { Notifications } from "./Notifications";
import { Projects } from "./Projects";
import { Room } from "./Room";

const LOGINS: { token: string; label: string }[] = [
  { token: "alice-token", label: "Alice (user 7)" },
  { token: "bob-token", label: "Bob (user 8)" },
];

function currentToken(): string {
  return /(?:^|; )session=([^;]*)/.exec(document.cookie)?.[1] ?? "";
}

function signIn(token: string) {
  document.cookie = token
    ? `session=${token}; path=/; SameSite=Lax`
    : "session=; path=/; max-age=0; SameSite=Lax";
  // The sidecar learns who we are when the socket opens: start over as the new user.
  location.reload();
}

/** `#project=4` opens that project's room, so a link can be shared. */
function projectFromHash(): number | null {
  const id = Number(/project=(\d+)/.exec(location.hash)?.[1]);
  return Number.isInteger(id) && id > 0 ? id : null;
}

export function App() {
  const client = useSyncClient();
  const { status, clientId, user } = useSyncStatus();
  const [openProject, setOpenProject] = useState<number | null>(projectFromHash);

  useEffect(() => {
    // For the curious (and the browser tests): the tab's client in the devtools console.
    (window as unknown as { syncgate: unknown }).syncgate = client;
  }, [client]);

  useEffect(() => {
    const onHash = () => setOpenProject(projectFromHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  const open = (id: number | null) => {
    location.hash = id === null ? "" : `project=${id}`;
    setOpenProject(id);
  };

  return (
    <>
      <header>
        <h1>syncgate demo</h1>
        <span className="status" data-testid="status" data-status={status}>
          {status}
        </span>
        <span className="muted" data-testid="client-id" title="X-Sync-Client">
          {clientId ?? "–"}
        </span>
        <Notifications />
        <label>
          signed in as{" "}
          <select data-testid="login" value={currentToken()} onChange={(e) => signIn(e.target.value)}>
            {LOGINS.map((l) => (
              <option key={l.token} value={l.token}>
                {l.label}
              </option>
            ))}
          </select>
        </label>
        <span data-testid="user" hidden>
          {user ?? ""}
        </span>
      </header>
      <main>
        <Projects openProject={openProject} onOpen={open} />
        {openProject !== null ? <Room projectId={openProject} onClose={() => open(null)} /> : <Hint />}
      </main>
    </>
  );
}

function Hint() {
  return (
    <section>
      <h2>Project room</h2>
      <p className="muted">Open a project to see who else is looking at it.</p>
    </section>
  );
}
