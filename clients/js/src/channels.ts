/**
 * Resume bookkeeping for the channels one client follows, with no I/O: who wants each channel, the
 * last `seq` seen on it (what `since` to resubscribe with), and whether a frame is new or a replay.
 *
 * A channel is wanted either explicitly (`subscribe`, reference-counted) or because a GET answered
 * with its position in `X-Sync-Position` ("followed"). Followed-only channels are capped and the
 * least recently fetched one is dropped first, so browsing many `project:{id}` pages never runs
 * into the sidecar's `max_subscriptions`.
 */

import type { SyncEvent } from "./frames.js";

interface ChannelState {
  refs: number;
  followed: boolean;
  lastUse: number;
  /** Newest seq this client has accounted for; null = subscribe live, no resume position yet. */
  lastSeq: number | null;
  /** A subscribe was sent on the current connection. */
  sent: boolean;
  /** The current connection's subscribe was acknowledged. */
  acked: boolean;
  waiters: (() => void)[];
}

export interface SubscribeFrame {
  op: "subscribe";
  channel: string;
  since?: number;
}

export const MAX_FOLLOWED = 50;

export class Channels {
  private readonly states = new Map<string, ChannelState>();
  private clock = 0;

  constructor(private readonly maxFollowed = MAX_FOLLOWED) {}

  has(channel: string): boolean {
    return this.states.has(channel);
  }

  names(): string[] {
    return [...this.states.keys()];
  }

  lastSeq(channel: string): number | null {
    return this.states.get(channel)?.lastSeq ?? null;
  }

  isAcked(channel: string): boolean {
    return this.states.get(channel)?.acked ?? false;
  }

  /** An explicit subscription; true when the channel is new (a subscribe must be sent). */
  add(channel: string, since?: number): boolean {
    const state = this.states.get(channel);
    if (state) {
      state.refs += 1;
      this.lowerUnsent(state, since);
      return false;
    }
    this.states.set(channel, this.fresh(since ?? null, 1, false));
    return true;
  }

  /** Drops one explicit reference; true when nobody wants the channel any more. */
  release(channel: string): boolean {
    const state = this.states.get(channel);
    if (!state) return false;
    state.refs = Math.max(0, state.refs - 1);
    if (state.refs > 0 || state.followed) return false;
    this.states.delete(channel);
    return true;
  }

  /**
   * A GET reflected `channel` at `seq`. Returns whether the channel is new (subscribe needed) and
   * the followed-only channels evicted to make room (unsubscribe needed).
   */
  follow(channel: string, seq: number): { isNew: boolean; evicted: string[] } {
    const state = this.states.get(channel);
    if (state) {
      state.followed = true;
      state.lastUse = ++this.clock;
      // Data older than what a not-yet-sent subscribe would resume from: resume from the older
      // point, so the events in between are replayed and this data gets invalidated.
      this.lowerUnsent(state, seq);
      return { isNew: false, evicted: [] };
    }
    this.states.set(channel, this.fresh(seq, 0, true));
    return { isNew: true, evicted: this.evictFollowed(channel) };
  }

  /** The subscribe to send for `channel` on the current connection, marking it sent. */
  subscribeFrame(channel: string): SubscribeFrame | null {
    const state = this.states.get(channel);
    if (!state) return null;
    state.sent = true;
    state.acked = false;
    return state.lastSeq === null
      ? { op: "subscribe", channel }
      : { op: "subscribe", channel, since: state.lastSeq };
  }

  /** The connection dropped: every channel must be subscribed again on the next one. */
  disconnected(): void {
    for (const state of this.states.values()) {
      state.sent = false;
      state.acked = false;
    }
  }

  /**
   * `subscribed` arrived. When history covered the gap (`recovered`) the replay follows and
   * `lastSeq` stays where it was; otherwise delivery is live from `seq` (a `reset` follows when a
   * resume was refused).
   */
  subscribed(channel: string, seq: number, recovered: boolean): void {
    const state = this.states.get(channel);
    if (!state) return;
    state.acked = true;
    if (!recovered || state.lastSeq === null) state.lastSeq = seq;
    for (const resolve of state.waiters.splice(0)) resolve();
  }

  /** Resolves once the channel's subscribe has been acknowledged (at once if it already was). */
  whenAcked(channel: string): Promise<void> {
    const state = this.states.get(channel);
    if (!state || state.acked) return Promise.resolve();
    return new Promise((resolve) => state.waiters.push(resolve));
  }

  /** True when `event` is news for its channel (false: unknown channel, replay or duplicate). */
  accept(event: Pick<SyncEvent, "channel" | "seq">): boolean {
    const state = this.states.get(event.channel);
    if (!state) return false;
    if (state.lastSeq !== null && event.seq <= state.lastSeq) return false;
    state.lastSeq = event.seq;
    return true;
  }

  private fresh(lastSeq: number | null, refs: number, followed: boolean): ChannelState {
    return { refs, followed, lastUse: ++this.clock, lastSeq, sent: false, acked: false, waiters: [] };
  }

  private lowerUnsent(state: ChannelState, seq: number | undefined): void {
    if (seq === undefined || state.sent) return;
    if (state.lastSeq === null || seq < state.lastSeq) state.lastSeq = seq;
  }

  private evictFollowed(keep: string): string[] {
    const candidates = [...this.states.entries()]
      .filter(([name, s]) => name !== keep && s.followed && s.refs === 0)
      .sort((a, b) => a[1].lastUse - b[1].lastUse);
    const excess = candidates.length + 1 - this.maxFollowed;
    const evicted = excess > 0 ? candidates.slice(0, excess).map(([name]) => name) : [];
    for (const name of evicted) this.states.delete(name);
    return evicted;
  }
}
