/**
 * Who is who: a project room with presence, and the notifications badge. Both rely on the sidecar
 * knowing the user (auth.mode upstream: the demo API's /api/auth/me reads the session cookie).
 */

import type { Page } from "playwright-core";
import { afterAll, beforeAll, expect, it, onTestFailed } from "vitest";
import { type Window, openWindow } from "./browser.js";
import { Stack, api } from "./stack.js";

let stack: Stack;
const windows: Window[] = [];

beforeAll(async () => {
  stack = await Stack.start();
});
afterAll(async () => {
  for (const w of windows) await w.close().catch(() => {});
  await stack?.stop();
});

async function tabAs(token: string, path = "/"): Promise<Page> {
  const w = await openWindow(stack.url, token);
  windows.push(w);
  return w.tab(path);
}

function showLogsOnFailure() {
  onTestFailed(() => console.log(stack.logs()));
}

const others = (page: Page) =>
  page.locator('[data-testid="others"] [data-testid="member"]').evaluateAll((rows) =>
    rows.map((row) => (row as HTMLElement).dataset.user),
  );

it("a project room shows who else is looking, and who left", async () => {
  showLogsOnFailure();
  const project = await api<{ id: number }>(stack.url, "POST", "/api/projects", { name: "room-test" }, "alice-token");
  const path = `/#project=${project.id}`;

  const alice = await tabAs("alice-token", path);
  await expect.poll(() => alice.locator('[data-testid="room"]').getAttribute("data-connected")).toBe("true");
  expect(await others(alice)).toEqual([]);

  const bob = await tabAs("bob-token", path);
  await expect.poll(() => others(alice), { timeout: 5_000 }).toEqual(["8"]);
  await expect.poll(() => others(bob), { timeout: 5_000 }).toEqual(["7"]);

  // A member's broadcast reaches the others, and is not echoed to the sender.
  await alice.click('[data-testid="wave"]');
  await expect.poll(() => bob.locator('[data-testid="last-wave"]').textContent()).toBe("user 7 waved");
  expect(await alice.locator('[data-testid="last-wave"]').count()).toBe(0);

  await bob.close();
  await expect.poll(() => others(alice), { timeout: 5_000 }).toEqual([]);
});

it("a notification for a user lights up that user's badge, in every tab", async () => {
  showLogsOnFailure();
  const aliceTabs = [await tabAs("alice-token")];
  aliceTabs.push(await windows.at(-1)!.tab());
  const bob = await tabAs("bob-token");
  const badge = (page: Page) => page.locator('[data-testid="notifications-badge"]').getAttribute("data-count");
  const before = Number(await badge(aliceTabs[0]!));

  await bob.click('[data-testid="notify-other"]');
  for (const tab of aliceTabs) await expect.poll(() => badge(tab), { timeout: 5_000 }).toBe(String(before + 1));
  expect(await badge(bob)).toBe("0");
});
