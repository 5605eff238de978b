/**
 * `@syncgate/client`: the framework-free core. See `createSyncClient`.
 */

export { createSyncClient } from "./client.js";
export type {
  ConnectionStatus,
  ServerError,
  Subscription,
  SubscribeOptions,
  SyncClient,
  SyncClientOptions,
} from "./client.js";
export { ManagedSocket } from "./socket.js";
export type { ManagedSocketOptions, SocketStatus } from "./socket.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { parsePosition } from "./position.js";
export { parseServerFrame } from "./frames.js";
export type { EventKey, ServerFrame, SyncEvent } from "./frames.js";
export { invalidationKeys, keyCovers, toKeys, RecentIds } from "./invalidation.js";
export { socketUrl, browserWakeSignals } from "./environment.js";
export type { SocketFactory, SocketLike, WakeSignals } from "./environment.js";
