// One chat turn: stream the answer into an assistant message and settle it in exactly one final state.
// A stream that breaks before its last event is resumed where it broke (resumeChat, Last-Event-ID).
import { ApiError, type ChatRequest, resumeChat, streamChat } from "./api";
import type { ChatEvent } from "./events";
import { formatWait } from "./format";
import { SseProtocolError } from "./sse";
import type { ChatMessage } from "./store";

export interface TurnHooks {
  onConversationId: (id: string) => void;
  /** Sources arrived (re-render the whole message) or text grew (re-render the answer). */
  onSources: () => void;
  onText: () => void;
  /** True once the visitor pressed stop: late tokens are not shown. */
  stopping: () => boolean;
}

export type TurnOutcome = { rateLimited: false } | { rateLimited: true; retryAfter: number | null };

/** A new question, or the replay of an answer's stream from its start (the page was reloaded mid-answer). */
export type TurnStart = { request: ChatRequest } | { resume: string };

/** The waits (ms) before each resume of a broken stream; a resume that delivers events starts them over. */
export const RESUME_DELAYS_MS: readonly number[] = [500, 1000, 2000, 4000];

/** How one read of a stream ended when it ended early. */
interface Break {
  progressed: boolean;
  refused: boolean;
  retryAfter: number | null;
}

export async function runTurn({
  api,
  start,
  signal,
  message,
  hooks,
  resumeDelays = RESUME_DELAYS_MS,
}: {
  api: string;
  start: TurnStart;
  signal: AbortSignal;
  message: ChatMessage;
  hooks: TurnHooks;
  resumeDelays?: readonly number[];
}): Promise<TurnOutcome> {
  const fail = (code: string, text: string, retryable = true) => {
    message.status = "error";
    message.error = { code, message: text, retryable };
  };
  // The stream: its conversation (named by the response headers before the first event), the last event read.
  let conversationId = "resume" in start ? start.resume : null;
  let lastEventId: string | null = null;
  // A replay from the start re-sends the sources and every token: the message is refilled from its first event
  // (not before, so a refused resume leaves what the page had kept).
  let refill = "resume" in start;

  const apply = (event: ChatEvent) => {
    if (event.id) lastEventId = event.id;
    if (refill) {
      refill = false;
      message.content = "";
      message.sources = [];
      hooks.onSources();
    }
    if (event.type === "sources") {
      message.sources = event.data;
      hooks.onSources();
    } else if (event.type === "token") {
      if (!hooks.stopping()) message.content += event.data.text;
      hooks.onText();
    } else if (event.type === "done") {
      hooks.onConversationId(event.data.conversation_id);
      message.status = event.data.finish_reason === "stopped" ? "stopped" : "done";
      message.tier = event.data.cascade_tier;
      message.serverId = event.data.message_id;
      message.citations = event.data.citations ?? [];
      message.suggestions = event.data.suggestions ?? [];
      if (event.data.curated_answer) message.curated = event.data.curated_answer;
    } else {
      fail(event.data.code, event.data.message, event.data.retryable);
    }
  };

  // Read until the stream ends; a break that a resume may mend is returned, anything else thrown.
  const drain = async (events: AsyncIterable<ChatEvent>): Promise<Break> => {
    let progressed = false;
    try {
      for await (const event of events) {
        apply(event);
        progressed = true;
      }
    } catch (error) {
      // No stream yet (the question was refused) or a broken one: settled below, as before resumes existed.
      if (signal.aborted || conversationId === null || error instanceof SseProtocolError) throw error;
      if (error instanceof ApiError) {
        const refused = error.status === 404 || error.status === 409 || !error.retryable;
        return { progressed, refused, retryAfter: error.retryAfter };
      }
      // Otherwise the network failed mid-read (fetch errors the body with a TypeError).
    }
    return { progressed, refused: false, retryAfter: null };
  };

  try {
    let events =
      "request" in start
        ? streamChat(api, start.request, signal, {
            onConversationId: (id) => {
              conversationId = id;
              message.conversationId = id; // saved with the session: a reload resumes this stream
              hooks.onConversationId(id);
            },
          })
        : resumeChat(api, start.resume, null, signal);
    let attempts = 0; // resumes since the stream last delivered an event
    for (;;) {
      const broke = await drain(events);
      if (message.status !== "streaming" || signal.aborted || conversationId === null) break;
      if (broke.progressed) attempts = 0;
      if (broke.refused || attempts >= resumeDelays.length) break;
      await pause(Math.max(resumeDelays[attempts], (broke.retryAfter ?? 0) * 1000), signal);
      attempts++;
      if (signal.aborted) break;
      events = resumeChat(api, conversationId, lastEventId, signal);
    }
    if (message.status === "streaming") {
      if (signal.aborted) message.status = "stopped";
      else if (refill) message.status = "interrupted"; // the reload's replay never came: as before resumes
      else fail("connection_lost", "The connection closed before the answer finished.");
    }
  } catch (error) {
    if (signal.aborted) {
      if (message.status === "streaming") message.status = "stopped";
    } else if (error instanceof ApiError && error.rateLimited) {
      return { rateLimited: true, retryAfter: error.retryAfter };
    } else if (error instanceof ApiError) {
      const wait = error.retryAfter ? ` Try again in ${formatWait(error.retryAfter)}.` : "";
      fail(error.code, error.message + wait, error.retryable);
    } else {
      fail("bad_stream", "The answer could not be read. Please try again.");
    }
  }
  return { rateLimited: false };
}

/** Wait, or less if the visitor stops meanwhile. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
