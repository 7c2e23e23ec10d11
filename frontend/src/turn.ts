// One chat turn: stream the answer into an assistant message and settle it in exactly one final state.
import { ApiError, type ChatRequest, streamChat } from "./api";
import { formatWait } from "./format";
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

export async function runTurn({
  api,
  request,
  signal,
  message,
  hooks,
}: {
  api: string;
  request: ChatRequest;
  signal: AbortSignal;
  message: ChatMessage;
  hooks: TurnHooks;
}): Promise<TurnOutcome> {
  const fail = (code: string, text: string, retryable = true) => {
    message.status = "error";
    message.error = { code, message: text, retryable };
  };
  try {
    const events = streamChat(api, request, signal, { onConversationId: hooks.onConversationId });
    for await (const event of events) {
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
      } else {
        fail(event.data.code, event.data.message, event.data.retryable);
      }
    }
    if (message.status === "streaming") {
      if (signal.aborted) message.status = "stopped";
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
