import { QueryClient, QueryObserver } from "@tanstack/react-query";
import { describe, expect, it, vi } from "vitest";
import { createSyncClient } from "../src/client.js";
import { invalidationKeys, keyCovers, toKeys } from "../src/invalidation.js";
import { invalidateKeys } from "../src/react/provider.js";
import { applyPresence, roomPath } from "../src/react/useRoom.js";
import { FakeNetwork, event, recordingLogger } from "./fakes.js";

describe("invalidation mapping", () => {
  it("takes an event's distinct, non-empty keys", () => {
    const keys = invalidationKeys({
      invalidate: [["projects"], ["project", "42"], [], ["projects"], ["project", 42]],
    });
    expect(keys).toEqual([["projects"], ["project", "42"]]);
  });

  it("a key covers the query keys it prefixes, comparing ids as text", () => {
    expect(keyCovers(["projects"], ["projects"])).toBe(true);
    expect(keyCovers(["projects"], ["projects", { page: 2 }])).toBe(true);
    expect(keyCovers(["project", "42"], ["project", 42])).toBe(true);
    expect(keyCovers(["project", "42"], ["project", "42", "tasks"])).toBe(true);
    expect(keyCovers(["project", "42"], ["project", "4"])).toBe(false);
    expect(keyCovers(["project", "42"], ["project"])).toBe(false);
    expect(keyCovers(["projects"], ["projects-archive"])).toBe(false);
    expect(keyCovers(["projects"], [{ projects: true }])).toBe(false);
  });

  it("strings in invalidateKeys mean one-part keys", () => {
    expect(toKeys(["projects", ["project", "1"]])).toEqual([["projects"], ["project", "1"]]);
  });

  it("invalidates exactly the cached queries an event's keys cover", async () => {
    const queryClient = new QueryClient();
    const keys = [["projects"], ["project", 42], ["project", 7], ["dashboard"], ["tasks"]];
    for (const key of keys) queryClient.setQueryData(key, "cached");
    await invalidateKeys(queryClient, invalidationKeys(event("projects", 1, {
      invalidate: [["projects"], ["project", "42"], ["dashboard"]],
    })));
    const stale = keys.filter((key) => queryClient.getQueryState(key)?.isInvalidated);
    expect(stale).toEqual([["projects"], ["project", 42], ["dashboard"]]);
    queryClient.clear();
  });

  it("an event during a query's first fetch is not answered by that fetch", async () => {
    const queryClient = new QueryClient();
    let calls = 0;
    let answerFirst: (list: string) => void = () => {};
    const observer = new QueryObserver(queryClient, {
      queryKey: ["projects"],
      queryFn: () => {
        calls += 1;
        return calls === 1 ? new Promise<string>((resolve) => (answerFirst = resolve)) : Promise.resolve("after");
      },
    });
    const stop = observer.subscribe(() => {});
    await vi.waitFor(() => expect(calls).toBe(1));
    // The event arrives while the first list (read before the change) is still on its way.
    const invalidated = invalidateKeys(queryClient, [["projects"]]);
    answerFirst("before");
    await invalidated;
    await vi.waitFor(() => expect(queryClient.getQueryData(["projects"])).toBe("after"));
    expect(calls).toBe(2);
    stop();
    queryClient.clear();
  });

  it("one mutation reaching two subscribed channels is handled once (same id)", () => {
    const net = new FakeNetwork();
    const client = createSyncClient({ socketFactory: net.factory, wakeSignals: null, url: "ws://x/api/ws", logger: recordingLogger() });
    const handled: string[] = [];
    client.onEvent((e) => handled.push(`${e.channel}#${e.seq}`));
    const perChannel: string[] = [];
    client.subscribe("projects", { onEvent: (e) => perChannel.push(e.channel) });
    client.subscribe("project:1", { onEvent: (e) => perChannel.push(e.channel) });
    const socket = net.accept();
    socket.receive(event("projects", 1, { id: "same" }));
    socket.receive(event("project:1", 1, { id: "same" }));
    socket.receive(event("projects", 2, { id: "other" }));
    expect(handled).toEqual(["projects#1", "projects#2"]);
    expect(perChannel).toEqual(["projects", "project:1", "projects"]);
    client.close();
  });
});

describe("room presence", () => {
  it("presence sets the members, joins add once, leaves remove", () => {
    let members = applyPresence([], { type: "presence", room: "project:1", users: [{ id: 7 }] });
    expect(members).toEqual([{ id: "7" }]);
    members = applyPresence(members, { type: "user_joined", room: "project:1", user: { id: "8" } });
    members = applyPresence(members, { type: "user_joined", room: "project:1", user: { id: "8" } });
    expect(members.map((m) => m.id)).toEqual(["7", "8"]);
    members = applyPresence(members, { type: "user_left", room: "project:1", user_id: "7" });
    expect(members.map((m) => m.id)).toEqual(["8"]);
  });

  it("room names go into the path readable, odd characters encoded", () => {
    expect(roomPath("project:4")).toBe("/api/ws/room/project:4");
    expect(roomPath("a b/c")).toBe("/api/ws/room/a%20b%2Fc");
  });
});

describe("bad frames", () => {
  it("are ignored with a warning, and the connection goes on", () => {
    const net = new FakeNetwork();
    const logger = recordingLogger();
    const client = createSyncClient({ socketFactory: net.factory, wakeSignals: null, url: "ws://x/api/ws", logger });
    const got: number[] = [];
    client.subscribe("projects", { onEvent: (e) => got.push(e.seq) });
    const socket = net.accept();
    const bad = [
      "not json{",
      "[1,2,3]",
      "42",
      { op: "teleport" },
      { op: "welcome" },
      { op: "subscribed", channel: "projects", seq: -1 },
      { type: "project_created", channel: "projects", id: "x" }, // no seq
      { ...event("projects", 1), invalidate: "projects" },
    ];
    for (const frame of bad) socket.receive(frame);
    socket.onmessage?.({ data: new ArrayBuffer(4) });
    expect(logger.warn).toHaveBeenCalledTimes(bad.length + 1);
    for (const call of logger.warn.mock.calls) expect(String(call[0])).toMatch(/ignoring a bad frame/);
    socket.receive(event("projects", 1));
    expect(got).toEqual([1]);
    expect(client.status).toBe("open");
    expect(net.sockets).toHaveLength(1);
    client.close();
  });

  it("server error frames are reported, not fatal", () => {
    const net = new FakeNetwork();
    const logger = recordingLogger();
    const client = createSyncClient({ socketFactory: net.factory, wakeSignals: null, url: "ws://x/api/ws", logger });
    const errors: string[] = [];
    client.onServerError((e) => errors.push(`${e.code}:${e.ref}`));
    const socket = net.accept();
    socket.receive({ op: "error", code: "forbidden", message: "not yours", ref: "subscribe" });
    expect(errors).toEqual(["forbidden:subscribe"]);
    expect(client.status).toBe("open");
    client.close();
  });
});
