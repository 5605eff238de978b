import { describe, expect, it } from "vitest";
import { DEFAULT_BACKOFF, backoffDelay } from "../src/backoff.js";

describe("backoffDelay", () => {
  it("first retry comes in under 500 ms whatever the jitter", () => {
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => 0)).toBeLessThan(500);
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => 0.999999)).toBeLessThan(500);
  });

  it("grows exponentially and never passes the 10 s cap", () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 100].map((n) => backoffDelay(n, DEFAULT_BACKOFF, () => 1));
    expect(ceilings.slice(0, 6)).toEqual([250, 500, 1000, 2000, 4000, 8000]);
    expect(ceilings.slice(6).every((d) => d === 10_000)).toBe(true);
  });

  it("jitter spreads delays between half and all of the ceiling", () => {
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 0)).toBe(1000);
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 0.5)).toBe(1500);
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 1)).toBe(2000);
  });
});
