// Small pure helpers: timestamps and links for source cards, and how long a rate-limited visitor waits.
import type { Source } from "./events";
import { safeHref } from "./markdown";

/** 75 -> "1:15"; 3725 -> "1:02:05". */
export function formatTimestamp(seconds: number): string {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Where a source card links: the document, or for a transcript the moment the passage starts. */
export function sourceHref(source: Source): string | null {
  const href = source.url ? safeHref(source.url) : null;
  if (href === null || source.start_seconds === null) return href;
  const url = new URL(href);
  url.hash = `t=${Math.floor(source.start_seconds)}`;
  return url.href;
}

/** A rate limit's wait in words: 42 -> "42 s", 150 -> "3 min", 3600 -> "60 min", 7200 -> "2 h" (rounded up,
 * so nobody retries too early; "3600 s" reads like a machine talking). */
export function formatWait(seconds: number): string {
  const total = Math.max(1, Math.ceil(seconds));
  if (total < 90) return `${total} s`;
  if (total < 90 * 60) return `${Math.ceil(total / 60)} min`;
  return `${Math.ceil(total / 3600)} h`;
}
