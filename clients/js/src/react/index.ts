/**
 * `@syncgate/client/react`: React bindings over the core client, for apps using TanStack Query v5.
 */

export { RealtimeSyncProvider, invalidateKeys } from "./provider.js";
export type { RealtimeSyncProviderProps } from "./provider.js";
export { useSyncClient, useSyncStatus } from "./context.js";
export type { SyncStatus } from "./context.js";
export { useMutationWithInvalidation } from "./useMutationWithInvalidation.js";
export type { MutationWithInvalidationOptions } from "./useMutationWithInvalidation.js";
export { useWebSocket } from "./useWebSocket.js";
export type { UseWebSocketOptions, UseWebSocketResult } from "./useWebSocket.js";
export { useNotifications } from "./useNotifications.js";
export type { UseNotificationsOptions, UseNotificationsResult } from "./useNotifications.js";
export { useRoom, roomPath, applyPresence, isPresenceFrame } from "./useRoom.js";
export type { RoomMember, RoomMessage, UseRoomOptions, UseRoomResult } from "./useRoom.js";
