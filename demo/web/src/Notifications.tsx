// The notifications badge: the user's private channel over the tab's one socket.
import { useNotifications, useSyncStatus } from "@syncgate/client/react";
import type { Notification } from "./api";
import { useApi } from "./api";

const OTHER_USER: Record<string, string> = { "7": "8", "8": "7" };

export function Notifications() {
  const { user } = useSyncStatus();
  const { unreadCount, lastMessage } = useNotifications<Notification>();
  const api = useApi();
  if (user === null) return <span className="muted">sign in for notifications</span>;
  const other = OTHER_USER[user];
  const lastTitle = (lastMessage?.data as { title?: string } | null)?.title;
  return (
    <span title={lastTitle ? `latest: ${lastTitle}` : undefined}>
      🔔{" "}
      <span className="badge" data-testid="notifications-badge" data-count={unreadCount}>
        {unreadCount}
      </span>{" "}
      {other && (
        <button data-testid="notify-other" onClick={() => void api.notify(other, `Hello from user ${user}`)}>
          Notify user {other}
        </button>
      )}
    </span>
  );
}
