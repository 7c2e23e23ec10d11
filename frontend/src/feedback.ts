// Helpful / not helpful (inline SVG thumbs) and an optional comment under a finished answer: POST /api/v1/messages/{id}/feedback.
import { errorFrom } from "./api";
import type { ChatMessage } from "./store";
import { h, icon, THUMB_DOWN_ICON, THUMB_UP_ICON } from "./view";

export type Rating = "up" | "down";
export const COMMENT_MAX = 500;

export interface GivenFeedback {
  rating: Rating;
  comment?: string;
}

/** Send (or replace) the rating of one answer; throws ApiError when the service refuses it. */
export async function sendFeedback(api: string, messageId: string, feedback: GivenFeedback): Promise<void> {
  const url = `${api.replace(/\/+$/, "")}/api/v1/messages/${encodeURIComponent(messageId)}/feedback`;
  const body: Record<string, string> = { rating: feedback.rating };
  if (feedback.comment) body.comment = feedback.comment.slice(0, COMMENT_MAX);
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorFrom(response);
}

/** The rating row; `onGive` stores and sends it, resolving to an error message or null. */
export function feedbackBar(
  message: ChatMessage,
  onGive: (message: ChatMessage, feedback: GivenFeedback) => Promise<string | null>,
): HTMLElement {
  const given = message.feedback;
  const note = h("span", { class: "fb-note", role: "status", "aria-live": "polite", "data-testid": "lorechat-feedback-note" });
  const rateButton = (rating: Rating, svg: string, label: string): HTMLButtonElement => {
    const button = h(
      "button",
      {
        type: "button", class: "icon-btn fb", "aria-label": label, title: label,
        "aria-pressed": String(given?.rating === rating), "data-testid": `lorechat-feedback-${rating}`,
      },
      icon(svg),
    ) as HTMLButtonElement;
    button.addEventListener("click", () => void give({ rating, comment: given?.rating === rating ? given.comment : undefined }));
    return button;
  };
  const up = rateButton("up", THUMB_UP_ICON, "Helpful");
  const down = rateButton("down", THUMB_DOWN_ICON, "Not helpful");
  const bar = h("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" }, up, down, note);

  async function give(feedback: GivenFeedback): Promise<void> {
    up.disabled = down.disabled = true;
    const error = await onGive(message, feedback);
    up.disabled = down.disabled = false;
    note.textContent = error ?? "Thanks for the feedback.";
    up.setAttribute("aria-pressed", String(message.feedback?.rating === "up"));
    down.setAttribute("aria-pressed", String(message.feedback?.rating === "down"));
    if (!error && !bar.querySelector("form")) bar.appendChild(commentForm());
  }

  function commentForm(): HTMLElement {
    const id = `lc-fb-${message.id}`;
    const box = h("textarea", {
      id, rows: "2", maxlength: String(COMMENT_MAX), "data-testid": "lorechat-feedback-comment",
      placeholder: "What was missing or wrong? (optional)",
    }) as HTMLTextAreaElement;
    box.value = message.feedback?.comment ?? "";
    const send = h("button", { type: "submit", class: "icon-btn", "data-testid": "lorechat-feedback-send" }, "Send");
    const form = h("form", { class: "fb-comment" }, h("label", { for: id, class: "sr-only" }, "Comment"), box, send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const rating = message.feedback?.rating;
      if (rating) void give({ rating, comment: box.value.trim() || undefined });
    });
    return form;
  }

  return bar;
}
