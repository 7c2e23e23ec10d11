import { describe, expect, it } from "vitest";
import { type ChatMessage, emptySession, loadSession, removeTurn, saveSession, streamingAnswer } from "../src/store";

function message(id: string, role: "user" | "assistant"): ChatMessage {
  return { id, role, content: id, status: "done", sources: [] };
}

describe("removeTurn", () => {
  it("removes an answer and the question before it, nothing else", () => {
    const session = emptySession(null);
    session.messages.push(message("q1", "user"), message("a1", "assistant"), message("q2", "user"), message("a2", "assistant"));
    removeTurn(session, session.messages[3]);
    expect(session.messages.map((m) => m.id)).toEqual(["q1", "a1"]);
  });

  it("leaves the session alone for a message it does not hold", () => {
    const session = emptySession(null);
    session.messages.push(message("q1", "user"), message("a1", "assistant"));
    removeTurn(session, message("elsewhere", "assistant"));
    expect(session.messages.map((m) => m.id)).toEqual(["q1", "a1"]);
  });
});

describe("loadSession", () => {
  it("keeps only a last answer whose stream is known streaming (to resume it); any other is interrupted", () => {
    const session = emptySession(null);
    session.conversationId = "conv-1";
    const streaming = (id: string, conversationId?: string): ChatMessage =>
      ({ ...message(id, "assistant"), status: "streaming", conversationId });
    session.messages.push(message("q1", "user"), streaming("a1", "conv-1"), message("q2", "user"), streaming("a2", "conv-1"));
    saveSession("k", session);
    const loaded = loadSession("k", null);
    expect(loaded.messages.map((m) => m.status)).toEqual(["done", "interrupted", "done", "streaming"]);
    expect(streamingAnswer(loaded)?.id).toBe("a2");

    // Reloaded before the service named the answer's stream: the conversation's latest stream is another answer.
    session.messages[3] = streaming("a2");
    saveSession("k", session);
    expect(loadSession("k", null).messages[3].status).toBe("interrupted");
    expect(streamingAnswer(loadSession("k", null))).toBeNull();
  });
});
