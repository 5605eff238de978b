import { describe, expect, it, vi } from "vitest";
import { createSyncClient } from "../src/client.js";
import { FakeNetwork, event, recordingLogger } from "./fakes.js";

function setup(fetchImpl?: typeof fetch) {
  const net = new FakeNetwork();
  const logger = recordingLogger();
  const client = createSyncClient({
    url: "ws://sync.test/api/ws",
    socketFactory: net.factory,
    wakeSignals: null,
    random: () => 0,
    logger,
    fetch: fetchImpl,
  });
  return { net, client, logger };
}

describe("resume bookkeeping", () => {
  it("resubscribes with since = the last seq seen after every reconnect, and drops replays", () => {
    vi.useFakeTimers();
    const { net, client } = setup();
    const got: number[] = [];
    client.subscribe("projects", { onEvent: (e) => got.push(e.seq) });
    let socket = net.accept();
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "projects" }]);
    socket.receive({ op: "subscribed", channel: "projects", seq: 4, recovered: false });
    socket.receive(event("projects", 5));
    socket.receive(event("projects", 6));

    socket.drop(1013, "too slow");
    vi.advanceTimersByTime(500);
    socket = net.accept();
    // One event of overlap (since = 6 - 1), to check that the sidecar's numbering is the same one.
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "projects", since: 5 }]);
    socket.receive({ op: "subscribed", channel: "projects", seq: 8, recovered: true });
    socket.receive(event("projects", 6)); // the overlap: the very event we saw at 6
    socket.receive(event("projects", 7));
    socket.receive(event("projects", 8));
    expect(got).toEqual([5, 6, 7, 8]);
    expect(client.position("projects")).toBe(8);

    socket.drop(1001, "going away");
    vi.advanceTimersByTime(500);
    socket = net.accept();
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "projects", since: 7 }]);
    client.close();
    vi.useRealTimers();
  });

  it("a restarted sidecar whose new numbering overlaps ours is detected and treated as reset", () => {
    vi.useFakeTimers();
    const { net, client } = setup();
    const resets: string[] = [];
    const got: string[] = [];
    client.onReset((channel) => resets.push(channel));
    client.subscribe("projects", { onEvent: (e) => got.push(e.id) });
    let socket = net.accept();
    socket.receive({ op: "subscribed", channel: "projects", seq: 0, recovered: false });
    for (let seq = 1; seq <= 10; seq++) socket.receive(event("projects", seq, { id: `old-${seq}` }));

    // The sidecar restarts and publishes 12 events of its own before we are back.
    socket.drop(1006);
    vi.advanceTimersByTime(500);
    socket = net.accept();
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "projects", since: 9 }]);
    socket.receive({ op: "subscribed", channel: "projects", seq: 12, recovered: true });
    socket.receive(event("projects", 10, { id: "new-10" })); // not the event we saw at 10
    socket.receive(event("projects", 11, { id: "new-11" }));
    expect(resets).toEqual(["projects"]);
    expect(got.slice(-2)).toEqual(["new-10", "new-11"]);
    expect(client.position("projects")).toBe(11);

    // Restarted again, with exactly as many events as we had seen: an empty "recovery".
    socket.drop(1006);
    vi.advanceTimersByTime(500);
    socket = net.accept();
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "projects", since: 10 }]);
    socket.receive({ op: "subscribed", channel: "projects", seq: 10, recovered: true });
    expect(resets).toEqual(["projects", "projects"]);
    expect(client.position("projects")).toBe(10);
    client.close();
    vi.useRealTimers();
  });

  it("on reset, tells listeners to refetch and continues live from the new seq", () => {
    vi.useFakeTimers();
    const { net, client } = setup();
    const resets: string[] = [];
    client.onReset((channel) => resets.push(channel));
    client.subscribe("projects", { since: 40 });
    let socket = net.accept();
    // The sidecar restarted: its numbering is behind ours, so it cannot vouch for the gap.
    socket.receive({ op: "subscribed", channel: "projects", seq: 2, recovered: false });
    socket.receive({ op: "reset", channel: "projects" });
    expect(resets).toEqual(["projects"]);
    expect(client.position("projects")).toBe(2);
    socket.receive(event("projects", 3));
    expect(client.position("projects")).toBe(3);

    socket.drop();
    vi.advanceTimersByTime(500);
    socket = net.accept();
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "projects", since: 2 }]); // 3, one early
    client.close();
    vi.useRealTimers();
  });

  it("fetch sends X-Sync-Client and subscribes from X-Sync-Position", async () => {
    const seenHeaders: Headers[] = [];
    const fetchImpl = vi.fn(async (_input: RequestInfo | URL, init?: RequestInit) => {
      seenHeaders.push(new Headers(init?.headers));
      return new Response("[]", {
        status: 200,
        headers: { "X-Sync-Position": "projects=17,project:4=3" },
      });
    });
    const { net, client } = setup(fetchImpl as unknown as typeof fetch);

    // Before the welcome there is no client id yet; positions are remembered for the subscribe.
    await client.fetch("/api/projects");
    expect(seenHeaders[0]?.has("X-Sync-Client")).toBe(false);
    const socket = net.accept("client-A");
    expect(socket.sentFrames()).toEqual([
      { op: "subscribe", channel: "projects", since: 17 },
      { op: "subscribe", channel: "project:4", since: 3 },
    ]);

    await client.fetch("/api/projects", { method: "POST", headers: { "Content-Type": "application/json" } });
    expect(seenHeaders[1]?.get("X-Sync-Client")).toBe("client-A");
    expect(seenHeaders[1]?.get("Content-Type")).toBe("application/json");
    // Already following both channels: no second subscribe.
    expect(socket.sentFrames()).toHaveLength(2);
    client.close();
  });

  it("a fetch answered while connected subscribes at once with since", async () => {
    const fetchImpl = async () =>
      new Response("{}", { status: 200, headers: { "X-Sync-Position": "tasks=9" } });
    const { net, client } = setup(fetchImpl as unknown as typeof fetch);
    const socket = net.accept();
    await client.fetch("/api/projects/1/tasks");
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "tasks", since: 9 }]);
    client.close();
  });

  it("unsubscribes when the last subscriber leaves, and not before", () => {
    const { net, client } = setup();
    const socket = net.accept();
    const a = client.subscribe("room:x");
    const b = client.subscribe("room:x");
    a.unsubscribe();
    a.unsubscribe(); // twice is harmless
    expect(socket.sentFrames()).toEqual([{ op: "subscribe", channel: "room:x" }]);
    b.unsubscribe();
    expect(socket.sentFrames().at(-1)).toEqual({ op: "unsubscribe", channel: "room:x" });
    client.close();
  });

  it("ready resolves when the subscription is acknowledged", async () => {
    const { net, client } = setup();
    const socket = net.accept("c1", "7");
    const sub = client.subscribe("user:7");
    let ready = false;
    void sub.ready.then(() => (ready = true));
    await Promise.resolve();
    expect(ready).toBe(false);
    socket.receive({ op: "subscribed", channel: "user:7", seq: 0, recovered: false });
    await sub.ready;
    expect(ready).toBe(true);
    expect(client.user).toBe("7");
    client.close();
  });
});
