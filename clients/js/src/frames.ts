/**
 * What the sidecar sends on its sockets, checked at the edge: a frame is either one of the shapes
 * below or `invalid` with a reason. Nothing past this module handles raw JSON.
 */

/** A query key as events carry it: `["project", "42"]`. */
export type EventKey = readonly (string | number)[];

/** The event envelope (SPEC "Event envelope"). */
export interface SyncEvent {
  type: string;
  channel: string;
  seq: number;
  id: string;
  resource: string | null;
  resource_id: string | null;
  action: string | null;
  invalidate: EventKey[];
  data: unknown;
  actor: string | null;
  ts: number | null;
}

export type ServerFrame =
  | { kind: "welcome"; clientId: string; user: string | null }
  | { kind: "subscribed"; channel: string; seq: number; recovered: boolean }
  | { kind: "reset"; channel: string }
  | { kind: "unsubscribed"; channel: string }
  | { kind: "error"; code: string; message: string; ref: string | null }
  | { kind: "pong" }
  | { kind: "event"; event: SyncEvent }
  | { kind: "invalid"; reason: string };

type Json = Record<string, unknown>;

const isSeq = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const isKey = (v: unknown): v is EventKey =>
  Array.isArray(v) && v.every((part) => typeof part === "string" || typeof part === "number");

function invalid(reason: string): ServerFrame {
  return { kind: "invalid", reason };
}

/** Parses one text frame of the generic socket. */
export function parseServerFrame(text: unknown): ServerFrame {
  if (typeof text !== "string") return invalid("binary frame");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return invalid("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return invalid("not a JSON object");
  }
  const frame = value as Json;
  if (frame.op === undefined) return parseEvent(frame);
  const channel = str(frame.channel);
  switch (frame.op) {
    case "welcome": {
      const clientId = str(frame.client_id);
      if (!clientId) return invalid("welcome without client_id");
      const user = frame.user === null || frame.user === undefined ? null : String(frame.user);
      return { kind: "welcome", clientId, user };
    }
    case "subscribed":
      if (!channel || !isSeq(frame.seq)) return invalid("subscribed without channel or seq");
      return { kind: "subscribed", channel, seq: frame.seq, recovered: frame.recovered === true };
    case "reset":
      if (!channel) return invalid("reset without channel");
      return { kind: "reset", channel };
    case "unsubscribed":
      if (!channel) return invalid("unsubscribed without channel");
      return { kind: "unsubscribed", channel };
    case "error":
      return {
        kind: "error",
        code: str(frame.code) ?? "unknown",
        message: str(frame.message) ?? "",
        ref: str(frame.ref),
      };
    case "pong":
      return { kind: "pong" };
    default:
      return invalid(`unknown op ${JSON.stringify(frame.op)}`);
  }
}

function parseEvent(frame: Json): ServerFrame {
  const type = str(frame.type);
  const channel = str(frame.channel);
  const id = str(frame.id);
  if (!type || !channel || !id || !isSeq(frame.seq)) {
    return invalid("event without type, channel, id or seq");
  }
  const invalidate = frame.invalidate ?? [];
  if (!Array.isArray(invalidate) || !invalidate.every(isKey)) {
    return invalid("event whose invalidate is not a list of keys");
  }
  const resourceId = frame.resource_id;
  return {
    kind: "event",
    event: {
      type,
      channel,
      seq: frame.seq,
      id,
      resource: str(frame.resource),
      resource_id: resourceId === null || resourceId === undefined ? null : String(resourceId),
      action: str(frame.action),
      invalidate,
      data: frame.data ?? null,
      actor: frame.actor === null || frame.actor === undefined ? null : String(frame.actor),
      ts: typeof frame.ts === "number" ? frame.ts : null,
    },
  };
}
