import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createSyncClient } from "../src/client.js";
import { FakeNetwork, ManualWake, recordingLogger } from "./fakes.js";

describe("reconnect timing", () => {
  let net: FakeNetwork;
  let wake: ManualWake;

  beforeEach(() => {
    vi.useFakeTimers();
    net = new FakeNetwork();
    wake = new ManualWake();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function client(random = () => 1) {
    return createSyncClient({
      url: "ws://sync.test/api/ws",
      socketFactory: net.factory,
      wakeSignals: wake,
      random,
      logger: recordingLogger(),
    });
  }

  it("retries after each drop with doubling delays up to 10 s, and fast again once healthy", () => {
    const c = client();
    net.accept();
    expect(c.status).toBe("open");

    net.last.drop();
    expect(c.status).toBe("reconnecting");
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      const before = net.sockets.length;
      let waited = 0;
      while (net.sockets.length === before) {
        vi.advanceTimersByTime(10);
        waited += 10;
        if (waited > 60_000) throw new Error("no reconnect attempt within a minute");
      }
      waits.push(waited);
      net.last.drop(); // the sidecar is still down
    }
    expect(waits).toEqual([250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);

    vi.advanceTimersByTime(10_000);
    net.accept(); // back: a welcome makes the connection healthy again
    expect(c.status).toBe("open");
    net.last.drop();
    const before = net.sockets.length;
    vi.advanceTimersByTime(249);
    expect(net.sockets.length).toBe(before);
    vi.advanceTimersByTime(1);
    expect(net.sockets.length).toBe(before + 1);
    c.close();
  });

  it("the first retry is under 500 ms even with the largest jitter", () => {
    const c = client(() => 0.999999);
    net.accept();
    net.last.drop();
    vi.advanceTimersByTime(499);
    expect(net.sockets).toHaveLength(2);
    c.close();
  });

  it("reconnects at once when the network comes back or the tab becomes visible", () => {
    const c = client();
    net.accept();
    net.last.drop();
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(10_000);
      net.last.drop();
    }
    // Now waiting several seconds for the next attempt; the wake signal skips the wait.
    const before = net.sockets.length;
    wake.fire();
    expect(net.sockets.length).toBe(before + 1);
    // The pending timer was cancelled: no second attempt sneaks in behind the woken one.
    vi.advanceTimersByTime(20_000);
    expect(net.sockets.length).toBe(before + 1);
    c.close();
  });

  it("a wake signal does nothing while connected", () => {
    const c = client();
    net.accept();
    wake.fire();
    expect(net.sockets).toHaveLength(1);
    c.close();
  });

  it("close() stops reconnecting for good", () => {
    const c = client();
    net.accept();
    c.close();
    expect(net.last.closedByClient).toBe(true);
    vi.advanceTimersByTime(60_000);
    wake.fire();
    expect(net.sockets).toHaveLength(1);
    expect(c.status).toBe("closed");
  });

  it("reconnect() replaces a live connection at once", () => {
    const c = client();
    net.accept();
    c.reconnect();
    expect(net.sockets).toHaveLength(2);
    expect(net.sockets[0]?.closedByClient).toBe(true);
    c.close();
  });
});
