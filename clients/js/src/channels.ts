/**
 * Resume bookkeeping for the channels one client follows, with no I/O: who wants each channel, the
 * last `seq` seen on it (what `since` to resubscribe with), and whether a frame is new or a replay.
 *
 * A channel is wanted either explicitly (`subscribe`, reference-counted) or because a GET answered
 * with its position in `X-Sync-Position` ("followed"). Followed-only channels are capped and the
 * least recently fetched one is dropped first, so browsing many `project:{id}` pages never runs
 * into the sidecar's `max_subscriptions`.
 *
 * Resume is verified, not trusted: a restarted sidecar (memory broker) numbers its channels from 1
 * again, and a `since` that happens to be within its new range would be "recovered" with the wrong
 * events, or with none. So when the id of the last event is known, the client resumes one event
 * early (`since = lastSeq - 1`) and checks that the event replayed at `lastSeq` is the one it saw.
 * Anything else means the numbering changed: the channel is treated as reset.
 */

import type { SyncEvent } from "./frames.js";

interface ChannelState {
  refs: number;
  followed: boolean;
  lastUse: number;
  /** Newest seq this client has accounted for; null = subscribe live, no resume position yet. */
  lastSeq: number | null;
  /** Id of the event at `lastSeq` when it came from an event (not from a position or an ack). */
  lastId: string | null;
  /** The resume overlap still to check: the event expected at `seq` on this connection. */
  verify: { seq: number; id: string } | null;
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
    state.verify = null;
    if (state.lastSeq === null) return { op: "subscribe", channel };
    if (state.lastId !== null && state.lastSeq > 0) {
      state.verify = { seq: state.lastSeq, id: state.lastId };
      return { op: "subscribe", channel, since: state.lastSeq - 1 };
    }
    return { op: "subscribe", channel, since: state.lastSeq };
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
   * resume was refused). Returns "renumbered" when the channel is now behind the event this client
   * last saw on it: a different numbering, to be handled as a reset.
   */
  subscribed(channel: string, seq: number, recovered: boolean): "ok" | "renumbered" {
    const state = this.states.get(channel);
    if (!state) return "ok";
    state.acked = true;
    for (const resolve of state.waiters.splice(0)) resolve();
    const verify = state.verify;
    if (!recovered || state.lastSeq === null || (verify && seq < verify.seq)) {
      state.verify = null;
      state.lastSeq = seq;
      state.lastId = null;
      return recovered && verify ? "renumbered" : "ok";
    }
    return "ok";
  }

  /** Resolves once the channel's subscribe has been acknowledged (at once if it already was). */
  whenAcked(channel: string): Promise<void> {
    const state = this.states.get(channel);
    if (!state || state.acked) return Promise.resolve();
    return new Promise((resolve) => state.waiters.push(resolve));
  }

  /**
   * Classifies an event for its channel: "new" (deliver it), "old" (unknown channel, replay or
   * duplicate: drop it) or "renumbered" (the resume overlap did not match: reset, then deliver).
   */
  accept(event: Pick<SyncEvent, "channel" | "seq" | "id">): "new" | "old" | "renumbered" {
    const state = this.states.get(event.channel);
    if (!state) return "old";
    const verify = state.verify;
    state.verify = null;
    if (verify && !(event.seq === verify.seq && event.id === verify.id)) {
      state.lastSeq = event.seq;
      state.lastId = event.id;
      return "renumbered";
    }
    if (state.lastSeq !== null && event.seq <= state.lastSeq) return "old";
    state.lastSeq = event.seq;
    state.lastId = event.id;
    return "new";
  }

  private fresh(lastSeq: number | null, refs: number, followed: boolean): ChannelState {
    return {
      refs,
      followed,
      lastUse: ++this.clock,
      lastSeq,
      lastId: null,
      verify: null,
      sent: false,
      acked: false,
      waiters: [],
    };
  }

  private lowerUnsent(state: ChannelState, seq: number | undefined): void {
    if (seq === undefined || state.sent) return;
    if (state.lastSeq === null || seq < state.lastSeq) {
      state.lastSeq = seq;
      state.lastId = null;
    }
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
