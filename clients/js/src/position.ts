/**
 * `X-Sync-Position` is how the sidecar says which state a GET response reflects:
 * `projects=17,project:4=3` — each channel the response belongs to, with its seq at that moment.
 */

/** Parses the header; malformed parts are skipped, never thrown on. */
export function parsePosition(header: string | null | undefined): Map<string, number> {
  const positions = new Map<string, number>();
  if (!header) return positions;
  for (const part of header.split(",")) {
    const at = part.lastIndexOf("=");
    if (at <= 0) continue;
    const channel = part.slice(0, at).trim();
    const seq = Number(part.slice(at + 1).trim());
    if (channel && Number.isSafeInteger(seq) && seq >= 0) positions.set(channel, seq);
  }
  return positions;
}
