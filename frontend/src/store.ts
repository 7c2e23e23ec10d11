// The conversation kept in localStorage, so a page reload shows it again.
import type { Citation, CuratedAnswerRef, MessageStatus, Source } from "./events";

export type { MessageStatus } from "./events";

export interface StoredError {
  code: string;
  message: string;
  retryable: boolean;
}

export interface ChatMessage {
  id: string;
  role: "user" | "assistant";
  content: string;
  status: MessageStatus;
  sources: Source[];
  error?: StoredError;
  tier?: string;
  /** The service's id for this answer (from `done`): what feedback is sent for. */
  serverId?: string;
  feedback?: { rating: "up" | "down"; comment?: string };
  /** The claim check of each answer sentence (from `done`, claims.ts). */
  citations?: Citation[];
  /** The conversation whose answer stream fills this message (X-Conversation-Id): what a reload resumes. */
  conversationId?: string;
  /** Follow-up questions the sources can answer (from `done`), offered under the latest answer. */
  suggestions?: string[];
  /** The curated answer this is (from `done`, tier "curated"). */
  curated?: CuratedAnswerRef;
}

export interface Session {
  conversationId: string | null;
  creator: string | null;
  messages: ChatMessage[];
}

const PREFIX = "lorechat:v1:";
// localStorage is small and shared with the host page: keep only the recent turns.
const MAX_MESSAGES = 40;

/** Remove an answer and the question before it (a retry, or a question the service did not accept). */
export function removeTurn(session: Session, answer: ChatMessage): void {
  const at = session.messages.indexOf(answer);
  if (at > 0) session.messages.splice(at - 1, 2);
}

export function emptySession(creator: string | null): Session {
  return { conversationId: null, creator, messages: [] };
}

export function loadSession(key: string, creator: string | null): Session {
  try {
    const raw = globalThis.localStorage?.getItem(PREFIX + key);
    if (!raw) return emptySession(creator);
    const parsed = JSON.parse(raw) as Partial<Session>;
    if (!parsed || !Array.isArray(parsed.messages)) return emptySession(creator);
    const messages = parsed.messages.filter(isMessage).map((message, at, all) =>
      // A turn that was streaming when the page went away goes on only if it is the last one and its stream is
      // known (the widget resumes it, see streamingAnswer); any other can no longer finish here.
      message.status === "streaming" && !(at === all.length - 1 && isResumable(message))
        ? { ...message, status: "interrupted" as const }
        : message,
    );
    return {
      conversationId: typeof parsed.conversationId === "string" ? parsed.conversationId : null,
      creator: typeof parsed.creator === "string" ? parsed.creator : creator,
      messages,
    };
  } catch {
    return emptySession(creator); // storage disabled (sandboxed iframe, private mode) or corrupt
  }
}

/** The session's last answer, when it was still streaming as the page went away and can be resumed. */
export function streamingAnswer(session: Session): (ChatMessage & { conversationId: string }) | null {
  const last = session.messages[session.messages.length - 1];
  return last && last.status === "streaming" && isResumable(last) ? last : null;
}

function isResumable(message: ChatMessage): message is ChatMessage & { conversationId: string } {
  return message.role === "assistant" && typeof message.conversationId === "string" && message.conversationId !== "";
}

export function saveSession(key: string, session: Session): void {
  try {
    const trimmed = { ...session, messages: session.messages.slice(-MAX_MESSAGES) };
    globalThis.localStorage?.setItem(PREFIX + key, JSON.stringify(trimmed));
  } catch {
    // Quota exceeded or storage disabled: the conversation simply won't survive a reload.
  }
}

export function clearSession(key: string): void {
  try {
    globalThis.localStorage?.removeItem(PREFIX + key);
  } catch {
    // see saveSession
  }
}

function isMessage(value: unknown): value is ChatMessage {
  const m = value as ChatMessage;
  return (
    !!m &&
    typeof m.id === "string" &&
    (m.role === "user" || m.role === "assistant") &&
    typeof m.content === "string" &&
    Array.isArray(m.sources)
  );
}
