/**
 * From events to TanStack Query keys, without importing TanStack Query: which keys an event asks
 * to invalidate, whether such a key covers a query key, and "this event id was already handled"
 * (one mutation publishes one event per channel, all with the same id).
 */

import type { EventKey, SyncEvent } from "./frames.js";

/** The distinct keys an event asks to invalidate, in order; empty keys are dropped. */
export function invalidationKeys(event: Pick<SyncEvent, "invalidate">): EventKey[] {
  const seen = new Set<string>();
  const keys: EventKey[] = [];
  for (const key of event.invalidate) {
    if (key.length === 0) continue;
    const text = JSON.stringify(key.map(String));
    if (seen.has(text)) continue;
    seen.add(text);
    keys.push(key);
  }
  return keys;
}

/**
 * True when `eventKey` is a prefix of `queryKey`, as TanStack's own prefix matching does, except
 * that numbers and strings compare by text: path ids arrive as strings (`["project", "42"]`) while
 * apps often key by number (`["project", 42]`).
 */
export function keyCovers(eventKey: EventKey, queryKey: readonly unknown[]): boolean {
  if (eventKey.length > queryKey.length) return false;
  return eventKey.every((part, i) => {
    const q = queryKey[i];
    return (typeof q === "string" || typeof q === "number") && String(q) === String(part);
  });
}

/** Normalizes user-facing keys: `"projects"` means `["projects"]`. */
export function toKeys(keys: readonly (string | EventKey)[]): EventKey[] {
  return keys.map((key) => (typeof key === "string" ? [key] : key));
}

/** A bounded "seen recently" set of event ids, oldest forgotten first. */
export class RecentIds {
  private readonly ids = new Set<string>();

  constructor(private readonly capacity = 1024) {}

  /** Records `id`; false when it was already there. */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next().value;
      if (oldest !== undefined) this.ids.delete(oldest);
    }
    return true;
  }
}
