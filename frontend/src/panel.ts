// The widget's static parts: the launcher button and the panel (header, options, messages, notice, question
// form). Pure builders: behaviour comes in as callbacks, so widget.ts keeps only state and rendering.
import { chatIcon, CLOSE_ICON, h, icon } from "./view";

export interface PanelElements {
  panel: HTMLElement;
  title: HTMLElement;
  options: HTMLElement;
  messages: HTMLElement;
  notice: HTMLElement;
  input: HTMLTextAreaElement;
  send: HTMLButtonElement;
  stop: HTMLButtonElement;
}

export interface PanelOptions {
  launcherMode: boolean;
  maxQuery: number;
  placeholder: string;
  onNewChat: () => void;
  onClose: () => void;
  onSend: (text: string) => void;
  onStop: () => void;
  onInput: () => void;
}

/** The round button that opens the panel (launcher mode only). */
export function buildLauncher(onToggle: () => void): HTMLButtonElement {
  const launcher = h("button", {
    type: "button", class: "launcher", "data-testid": "lorechat-launcher", "aria-controls": "lc-panel",
  }) as HTMLButtonElement;
  launcher.appendChild(chatIcon());
  launcher.addEventListener("click", onToggle);
  return launcher;
}

export function buildPanel(options: PanelOptions): PanelElements {
  const title = h("h2", { id: "lc-title" });
  const newChat = h("button", { type: "button", class: "icon-btn", "data-testid": "lorechat-new-conversation" }, "New chat");
  newChat.addEventListener("click", options.onNewChat);
  const close = options.launcherMode
    ? h("button", { type: "button", class: "icon-btn", "aria-label": "Close chat", "data-testid": "lorechat-close" }, icon(CLOSE_ICON))
    : null;
  close?.addEventListener("click", options.onClose);
  const { form, input, send, stop } = buildForm(options);
  const messages = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-labelledby": "lc-title" });
  const notice = h("div", { class: "notice", role: "status", "data-testid": "lorechat-rate-limit", hidden: true });
  const optionsRow = h("div", { class: "options" });
  const panel = h(
    "section",
    { class: "panel", id: "lc-panel", role: options.launcherMode ? "dialog" : "region", "aria-labelledby": "lc-title" },
    h("header", {}, title, newChat, close),
    optionsRow, messages, notice, form,
    h("div", { class: "footer" }, "Answers cite their sources. Check them."),
  );
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && options.launcherMode) {
      event.stopPropagation();
      options.onClose();
    }
  });
  return { panel, title, options: optionsRow, messages, notice, input, send, stop };
}

/** The question box: Enter sends, Shift+Enter adds a line, Stop cancels the answer in flight. */
function buildForm(options: PanelOptions) {
  const input = h("textarea", {
    id: "lc-input", rows: "1", maxlength: String(options.maxQuery), "data-testid": "lorechat-input",
    placeholder: options.placeholder,
  }) as HTMLTextAreaElement;
  const send = h("button", { type: "submit", class: "primary", "data-testid": "lorechat-send" }, "Send") as HTMLButtonElement;
  const stop = h("button", { type: "button", class: "secondary", "data-testid": "lorechat-stop", hidden: true }, "Stop") as HTMLButtonElement;
  const form = h("form", {}, h("label", { class: "sr-only", for: "lc-input" }, "Your question"), input, send, stop);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    options.onSend(input.value);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      options.onSend(input.value);
    }
  });
  input.addEventListener("input", options.onInput);
  stop.addEventListener("click", options.onStop);
  return { form, input, send, stop };
}
