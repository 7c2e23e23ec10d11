import { describe, expect, it } from "vitest";
import { type ChatMessage, emptySession, removeTurn } from "../src/store";

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
