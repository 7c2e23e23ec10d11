// HTTP client for the lorechat service: the streaming chat call, its resume, stop, creators.
import type { ChatEvent, ChatRequest } from "./events";
import { readChatEvents } from "./sse";

export type { ChatRequest } from "./events";

export interface CreatorInfo {
  slug: string;
  name: string;
  bio: string;
  documents: number;
  chunks: number;
}

/** A failure before the stream started (plain HTTP error), or the network itself. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly retryable: boolean,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }

  get rateLimited(): boolean {
    return this.status === 429;
  }
}

function endpoint(api: string, path: string): string {
  return api.replace(/\/+$/, "") + path;
}

function retryAfterOf(response: Response, body: Record<string, unknown>): number | null {
  const fromBody = Number(body.retry_after);
  if (Number.isFinite(fromBody) && fromBody > 0) return Math.ceil(fromBody);
  const fromHeader = Number(response.headers.get("Retry-After"));
  return Number.isFinite(fromHeader) && fromHeader > 0 ? Math.ceil(fromHeader) : null;
}

/** Turn any of the service's error bodies (ours, FastAPI's 422, the limiter's) into one ApiError. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = await response.json();
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
  } catch {
    // A proxy's HTML error page: keep the status only.
  }
  const status = response.status;
  const retryAfter = retryAfterOf(response, body);
  if (status === 429) {
    const message = typeof body.error === "string" ? body.error : "Rate limit exceeded";
    return new ApiError(message, status, String(body.code ?? "rate_limited"), true, retryAfter);
  }
  if (status === 422 && Array.isArray(body.detail)) {
    const first = body.detail[0] as { msg?: unknown } | undefined;
    const message = typeof first?.msg === "string" ? first.msg : "The question could not be sent.";
    return new ApiError(message, status, "invalid_input", false);
  }
  const message = typeof body.message === "string" ? body.message : `The service answered ${status}.`;
  const retryable = typeof body.retryable === "boolean" ? body.retryable : status >= 500;
  return new ApiError(message, status, String(body.code ?? `http_${status}`), retryable, retryAfter);
}

export interface StreamHandlers {
  /** The conversation id, as soon as the response headers carry it (X-Conversation-Id). */
  onConversationId?: (id: string) => void;
}

/** POST the question and yield the stream's typed events; throws ApiError before the first event. */
export function streamChat(
  api: string,
  request: ChatRequest,
  signal: AbortSignal,
  handlers: StreamHandlers = {},
): AsyncGenerator<ChatEvent, void, undefined> {
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(request),
  };
  return openStream(endpoint(api, "/api/v1/chat"), init, signal, handlers);
}

/**
 * Resume the conversation's answer stream: the events after `lastEventId` (all of them when null), byte for
 * byte as first sent, then live until `done` or `error`. Throws ApiError before the first event: 404 (no
 * stream kept), 409 (this service keeps none), 503 and 429 (retryable, maybe with retryAfter).
 */
export function resumeChat(
  api: string,
  conversationId: string,
  lastEventId: string | null,
  signal: AbortSignal,
): AsyncGenerator<ChatEvent, void, undefined> {
  const headers: Record<string, string> = { Accept: "text/event-stream" };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const path = `/api/v1/conversations/${encodeURIComponent(conversationId)}/stream`;
  // A replay must never come from the HTTP cache.
  return openStream(endpoint(api, path), { headers, cache: "no-store" }, signal);
}

async function* openStream(
  url: string,
  init: RequestInit,
  signal: AbortSignal,
  handlers: StreamHandlers = {},
): AsyncGenerator<ChatEvent, void, undefined> {
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal });
  } catch (error) {
    if (signal.aborted) throw error;
    throw new ApiError("The chat service could not be reached.", 0, "network_error", true);
  }
  if (!response.ok) throw await errorFrom(response);
  const conversationId = response.headers.get("X-Conversation-Id");
  if (conversationId) handlers.onConversationId?.(conversationId);
  if (!response.body) throw new ApiError("The service sent an empty answer.", response.status, "empty", true);
  yield* readChatEvents(response.body, signal);
}

/** Ask the service to stop generating; best effort (the fetch is aborted anyway). */
export async function stopConversation(api: string, conversationId: string): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 3000);
  try {
    await fetch(endpoint(api, `/api/v1/conversations/${encodeURIComponent(conversationId)}/stop`), {
      method: "POST",
      signal: controller.signal,
      keepalive: true,
    });
  } catch {
    // The abort of the stream still ends the turn server-side (disconnect).
  } finally {
    clearTimeout(timer);
  }
}

export async function listCreators(api: string, signal?: AbortSignal): Promise<CreatorInfo[]> {
  const response = await fetch(endpoint(api, "/api/v1/creators"), { signal, headers: { Accept: "application/json" } });
  if (!response.ok) throw await errorFrom(response);
  const body: unknown = await response.json();
  return Array.isArray(body) ? (body as CreatorInfo[]) : [];
}

/** The questions to offer before the first one (GET /api/v1/starters): [] when the service has none or fails. */
export async function listStarters(
  api: string,
  creator: string | null,
  site: string | null,
  signal?: AbortSignal,
): Promise<string[]> {
  const query = new URLSearchParams();
  if (creator) query.set("creator", creator);
  if (site) query.set("site", site);
  const suffix = query.toString() ? `?${query}` : "";
  try {
    const response = await fetch(endpoint(api, `/api/v1/starters${suffix}`), {
      signal, headers: { Accept: "application/json" },
    });
    if (!response.ok) return [];
    const body = (await response.json()) as { questions?: unknown };
    return Array.isArray(body.questions) ? body.questions.filter((q): q is string => typeof q === "string") : [];
  } catch {
    return [];
  }
}
