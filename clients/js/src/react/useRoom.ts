/**
 * `useRoom(room)`: join a collaboration room (`/api/ws/room/{room}`), see who is in it, and
 * broadcast to the others. Presence frames (SPEC "Rooms") keep `members`; any other frame becomes
 * `lastMessage`. Reconnects like every socket here; the sidecar re-sends presence on rejoin.
 */

import { useCallback, useState } from "react";
import { useWebSocket } from "./useWebSocket.js";

export interface RoomMember {
  id: string;
  [field: string]: unknown;
}

export interface RoomMessage {
  type: string;
  data?: unknown;
  [field: string]: unknown;
}

export interface UseRoomOptions {
  /** Path template of the sidecar's `websocket.room_path` (default `/api/ws/room/{room}`). */
  pathTemplate?: string;
  token?: string | null;
  onMessage?: (message: RoomMessage) => void;
  /** False: stay out of the room. Default true. */
  enabled?: boolean;
}

export interface UseRoomResult {
  members: RoomMember[];
  /** Sends `{type, data}` to the other members (never echoed to you). */
  broadcast: (type: string, data?: unknown) => boolean;
  lastMessage: RoomMessage | null;
  isConnected: boolean;
}

/** Room names like `project:4` go into the path as is; anything unusual is percent-encoded. */
export function roomPath(room: string, template = "/api/ws/room/{room}"): string {
  return template.replace("{room}", encodeURIComponent(room).replace(/%3A/gi, ":"));
}

const PRESENCE_TYPES = new Set(["presence", "user_joined", "user_left"]);

/** True for the frames that change who is in the room. */
export function isPresenceFrame(frame: RoomMessage): boolean {
  return PRESENCE_TYPES.has(frame.type);
}

/** Applies one presence frame to the member list (a user with several tabs is listed once). */
export function applyPresence(members: RoomMember[], frame: RoomMessage): RoomMember[] {
  switch (frame.type) {
    case "presence":
      return Array.isArray(frame.users) ? (frame.users as RoomMember[]).map(normalizeMember) : [];
    case "user_joined": {
      const user = frame.user as RoomMember | undefined;
      if (!user || user.id === undefined) return members;
      const member = normalizeMember(user);
      return members.some((m) => m.id === member.id) ? members : [...members, member];
    }
    case "user_left":
      return members.filter((m) => m.id !== String(frame.user_id));
    default:
      return members;
  }
}

function normalizeMember(user: RoomMember): RoomMember {
  return { ...user, id: String(user.id) };
}

export function useRoom(room: string, options: UseRoomOptions = {}): UseRoomResult {
  const { pathTemplate, token = null, enabled = true } = options;
  const [members, setMembers] = useState<RoomMember[]>([]);
  const [lastMessage, setLastMessage] = useState<RoomMessage | null>(null);
  const onMessage = options.onMessage;

  const { isConnected, send } = useWebSocket<RoomMessage>(roomPath(room, pathTemplate), {
    token,
    enabled,
    onMessage: (frame) => {
      if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
      if (isPresenceFrame(frame)) {
        setMembers((current) => applyPresence(current, frame));
        return;
      }
      setLastMessage(frame);
      onMessage?.(frame);
    },
    // Who is present is unknown while disconnected; the rejoin's presence frame refills it.
    onClose: () => setMembers([]),
  });

  const broadcast = useCallback((type: string, data?: unknown) => send({ type, data }), [send]);
  return { members, broadcast, lastMessage, isConnected };
}
