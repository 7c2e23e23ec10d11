// The chat stream's event vocabulary: TypeScript twin of backend/stream/events.py.
// tests/frontend/test_event_twin.py parses this file and compares it to the Pydantic models, so keep one
// field per line in the form `name: type;` (or `name?: type;` for fields with a default). Each event's `type`
// travels as the SSE `event:` line (ChatEvent.type below), not inside `data`.

export const EVENT_NAMES = ["sources", "token", "done", "error"] as const;
export type EventName = (typeof EVENT_NAMES)[number];

// Where a stored message stands (backend/storage/records.py MessageStatus).
export const MESSAGE_STATUSES = ["streaming", "done", "stopped", "interrupted", "error"] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

// The body of POST /api/v1/chat (backend/api/chat.py ChatRequest).
export interface ChatRequest {
  query: string;
  creator?: string | null;
  conversation_id?: string | null;
  personality_weight?: number;
  site?: string | null;
}

export interface Source {
  index: number;
  chunk_id: string;
  document_id: string;
  creator: string;
  title: string;
  url: string | null;
  snippet: string;
  score: number;
  start_seconds: number | null;
  end_seconds: number | null;
  text: string;
}

export interface TokenEvent {
  text: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface SkippedTier {
  tier: string;
  reason: string;
}

export interface Quote {
  source: number;
  start: number;
  end: number;
}

export interface Citation {
  start: number;
  end: number;
  sources: number[];
  quote: Quote | null;
  supported: boolean;
  score: number;
  claim: boolean;
  verified?: boolean;
}

export interface CuratedAnswerRef {
  id: string;
  version: number;
}

export interface DoneEvent {
  conversation_id: string;
  message_id: string;
  cascade_tier: string;
  skipped: SkippedTier[];
  finish_reason: string;
  search_query: string;
  usage: Usage;
  citations?: Citation[];
  unanswered?: boolean;
  curated_answer?: CuratedAnswerRef | null;
  suggestions?: string[];
  trace_id?: string | null;
}

export interface ErrorEvent {
  code: string;
  message: string;
  retryable: boolean;
  request_id?: string | null;
}

/** One decoded stream event; `sources` carries a bare array. */
export type ChatEvent =
  | { type: "sources"; id: string; data: Source[] }
  | { type: "token"; id: string; data: TokenEvent }
  | { type: "done"; id: string; data: DoneEvent }
  | { type: "error"; id: string; data: ErrorEvent };

export function isEventName(name: string): name is EventName {
  return (EVENT_NAMES as readonly string[]).includes(name);
}
