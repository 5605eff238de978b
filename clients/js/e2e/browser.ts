/**
 * Debian's Chromium driven by playwright-core: never a downloaded browser. Each window is its own
 * browser process with a fresh profile directory (so two windows can be two different users);
 * tabs of one window share cookies, like a real user's tabs.
 */

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, type Page, chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Window {
  context: BrowserContext;
  /** Opens a tab on `path` of the stack and waits until its socket is connected. */
  tab(path?: string): Promise<Page>;
  close(): Promise<void>;
}

/** A browser window for one user (`token`: a demo login, sent as the `session` cookie). */
export async function openWindow(baseUrl: string, token?: string): Promise<Window> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/test-all.sh does)`);
  }
  const profile = mkdtempSync(join(tmpdir(), "syncgate-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  if (token) await context.addCookies([{ name: "session", value: token, url: baseUrl }]);
  // A persistent context starts with one blank tab; reuse it as the first tab.
  let blank: Page | undefined = context.pages()[0];
  return {
    context,
    async tab(path = "/") {
      const page = blank ?? (await context.newPage());
      blank = undefined;
      page.on("console", (msg) => {
        if (msg.type() === "warning" || msg.type() === "error") console.log(`[page ${msg.type()}] ${msg.text()}`);
      });
      await page.goto(`${baseUrl}${path}`);
      await page.locator('[data-testid="status"][data-status="open"]').waitFor({ timeout: 15_000 });
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Names of the projects the page shows, in order. */
export async function shownProjects(page: Page): Promise<string[]> {
  return page.locator('[data-testid="project"]').evaluateAll((rows) =>
    rows.map((row) => (row as HTMLElement).dataset.name ?? ""),
  );
}

/** Counts the page's GET requests to `path`, from now on. */
export function countGets(page: Page, path: string): { readonly count: number } {
  const counter = { count: 0 };
  page.on("request", (request) => {
    if (request.method() === "GET" && new URL(request.url()).pathname === path) counter.count += 1;
  });
  return counter;
}
