// A project room: who else is looking at this project, and a wave to them.
import { useRoom, useSyncStatus } from "@syncgate/client/react";

export function Room(props: { projectId: number; onClose: () => void }) {
  const { user } = useSyncStatus();
  // Rooms need to know who you are; anonymous visitors stay out.
  const room = useRoom(`project:${props.projectId}`, { enabled: user !== null });
  const others = room.members.filter((m) => m.id !== user);
  const wave = room.lastMessage?.type === "document_updated" ? room.lastMessage : null;

  return (
    <section data-testid="room" data-room={`project:${props.projectId}`} data-connected={room.isConnected}>
      <h2>
        Project #{props.projectId} <button onClick={props.onClose}>Close</button>
      </h2>
      {user === null ? (
        <p className="muted">Sign in to join this project's room.</p>
      ) : (
        <>
          <p className="muted">{room.isConnected ? "In the room." : "Joining…"}</p>
          <h3>Also looking</h3>
          <ul className="members" data-testid="others">
            {others.length === 0 && <li className="muted">nobody else</li>}
            {others.map((m) => (
              <li key={m.id} data-testid="member" data-user={m.id}>
                user {m.id}
              </li>
            ))}
          </ul>
          <button data-testid="wave" onClick={() => room.broadcast("document_updated", { wave: user })}>
            Wave
          </button>
          {wave && <p data-testid="last-wave">user {String((wave.data as { wave?: string })?.wave)} waved</p>}
        </>
      )}
    </section>
  );
}
