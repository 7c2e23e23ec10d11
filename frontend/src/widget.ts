// <lorechat-widget>: the custom element. Owns the session state and the one stream in flight.
import { type CreatorInfo, listCreators, listStarters, stopConversation } from "./api";
import { feedbackBar, type GivenFeedback, sendFeedback } from "./feedback";
import { formatWait } from "./format";
import {
  type ChatMessage, clearSession, emptySession, loadSession, removeTurn, type Session, saveSession, streamingAnswer,
} from "./store";
import { buildLauncher, buildPanel, type PanelElements } from "./panel";
import { STYLES } from "./styles";
import { runTurn, type TurnOutcome, type TurnStart } from "./turn";
import {
  cardId, creatorPicker, fillAnswer, h, type MessageActions, messageView, personalitySlider, questionButtons,
} from "./view";

const MAX_QUERY = 1000;
const MAX_STARTERS = 4;
const MAX_FOLLOW_UPS = 3;
let counter = 0;
const newId = () => `m${Date.now().toString(36)}${(counter++).toString(36)}`;

export class LorechatWidget extends HTMLElement {
  static observedAttributes = [
    "api", "creator", "mode", "personality", "personality-weight", "accent", "heading", "site",
  ];

  private readonly shadow: ShadowRoot;
  private session: Session = emptySession(null);
  private creators: CreatorInfo[] = [];
  private starters: string[] = [];
  private startersFor = "";
  private weight = 0.5;
  private isOpen = false;
  private ready = false;
  private controller: AbortController | null = null;
  private stopping = false;
  private live: { message: ChatMessage; answer: HTMLElement | null } | null = null;
  private frame = 0;
  private noticeTimer: ReturnType<typeof setInterval> | undefined;
  private els!: PanelElements & { launcher: HTMLButtonElement | null };
  private readonly actions: MessageActions = {
    onCite: (messageId, index) => this.highlightSource(messageId, index),
    onRetry: (messageId) => this.retry(messageId),
    feedback: (message) =>
      message.role === "assistant" && message.serverId && (message.status === "done" || message.status === "stopped")
        ? feedbackBar(message, (rated, given) => this.giveFeedback(rated, given))
        : null,
    // Follow-ups under the latest answer only, once it is done and nothing else is streaming.
    suggestions: (message) =>
      message.status === "done" && !this.controller && this.session.messages[this.session.messages.length - 1] === message
        ? (message.suggestions ?? []).slice(0, MAX_FOLLOW_UPS)
        : [],
    onAsk: (question) => void this.send(question),
  };

  constructor() {
    super();
    this.shadow = this.attachShadow({ mode: "open" });
  }

  // --- attributes -------------------------------------------------------------------------------
  private get api(): string {
    return this.getAttribute("api") ?? "";
  }
  private get fixedCreator(): string | null {
    return this.getAttribute("creator") || null;
  }
  private get launcherMode(): boolean {
    return this.getAttribute("mode") !== "inline";
  }
  private get storageKey(): string {
    return this.getAttribute("storage-key") ?? `${this.api}|${this.fixedCreator ?? "*"}`;
  }
  private get creator(): string | null {
    return this.fixedCreator ?? this.session.creator;
  }

  connectedCallback(): void {
    this.ready = true;
    this.setup();
  }

  disconnectedCallback(): void {
    this.ready = false;
    this.controller?.abort();
    clearInterval(this.noticeTimer);
  }

  attributeChangedCallback(name: string, previous: string | null, value: string | null): void {
    // An upgrade reports every attribute before connectedCallback: build once, there.
    if (!this.ready || previous === value) return;
    // Presentation changes apply in place: an answer in flight keeps streaming (only a new API or creator,
    // i.e. another conversation, rebuilds the widget and ends it).
    if (name === "accent") this.applyAccent();
    else if (name === "heading") this.renderTitle();
    else if (name === "personality" || name === "personality-weight") this.applyPersonality();
    else if (name === "site") return; // read at each send
    else this.setup();
  }

  // --- building -----------------------------------------------------------------------------------
  private setup(): void {
    this.controller?.abort();
    this.applyAccent();
    this.readWeight();
    this.session = loadSession(this.storageKey, this.fixedCreator);
    this.isOpen = !this.launcherMode || this.hasAttribute("open");

    const launcher = this.launcherMode ? buildLauncher(() => this.setOpen(!this.isOpen)) : null;
    this.els = {
      launcher,
      ...buildPanel({
        launcherMode: this.launcherMode,
        maxQuery: MAX_QUERY,
        placeholder: this.getAttribute("placeholder") ?? "Ask a question…",
        onNewChat: () => this.newConversation(),
        onClose: () => this.setOpen(false),
        onSend: (text) => void this.send(text),
        onStop: () => void this.stop(),
        onInput: () => this.autosize(),
      }),
    };
    const style = document.createElement("style");
    style.textContent = STYLES;
    const wrap = h("div", { class: this.launcherMode ? "floating" : "inline" }, launcher, this.els.panel);
    this.shadow.replaceChildren(style, wrap);
    this.renderOptions();
    this.renderTitle();
    this.renderMessages();
    this.setOpen(this.isOpen, false);
    // Reloaded mid-answer: the answer's stream is replayed into its message, as a live turn.
    const pending = streamingAnswer(this.session);
    if (pending) void this.play(pending, { resume: pending.conversationId });
    // The list feeds the picker, and with a fixed creator still gives the heading a name instead of a slug.
    void this.loadCreators();
    void this.loadStarters();
  }

  /** The questions offered before the first one, for this creator and site (GET /api/v1/starters). */
  private async loadStarters(): Promise<void> {
    const key = `${this.creator ?? ""}|${this.getAttribute("site") ?? ""}`;
    if (key === this.startersFor) return;
    this.startersFor = key;
    const starters = await listStarters(this.api, this.creator, this.getAttribute("site"));
    if (key !== this.startersFor) return; // another creator was picked meanwhile
    this.starters = starters.slice(0, MAX_STARTERS);
    if (this.session.messages.length === 0) this.renderMessages();
  }

  private applyAccent(): void {
    const accent = this.getAttribute("accent");
    if (accent && (typeof CSS === "undefined" || CSS.supports("color", accent))) {
      this.style.setProperty("--lorechat-accent", accent);
    } else {
      this.style.removeProperty("--lorechat-accent");
    }
  }

  private async loadCreators(): Promise<void> {
    try {
      this.creators = await listCreators(this.api);
    } catch {
      this.creators = []; // no picker: questions go to all creators
    }
    this.renderOptions();
    this.renderTitle();
  }

  private renderOptions(): void {
    const parts: HTMLElement[] = [];
    if (!this.fixedCreator && this.creators.length > 0) {
      parts.push(creatorPicker(this.creators, this.session.creator, (slug) => this.pickCreator(slug)));
    }
    if (this.getAttribute("personality") === "on") {
      parts.push(personalitySlider(this.weight, (weight) => (this.weight = weight)));
    }
    this.els.options.replaceChildren(...parts);
  }

  private readWeight(): void {
    // A page that neither shows the slider nor sets a weight gets the neutral voice (0), not the slider's default.
    const weight = Number.parseFloat(this.getAttribute("personality-weight") ?? "");
    const fallback = this.getAttribute("personality") === "on" ? 0.5 : 0;
    this.weight = Number.isFinite(weight) ? Math.min(1, Math.max(0, weight)) : fallback;
  }

  private applyPersonality(): void {
    this.readWeight();
    this.renderOptions();
  }

  private renderTitle(): void {
    const slug = this.creator;
    const name = this.creators.find((creator) => creator.slug === slug)?.name ?? slug;
    this.els.title.textContent = this.getAttribute("heading") ?? (name ? `Ask ${name}` : "Ask the library");
  }

  private renderMessages(): void {
    const nodes = this.session.messages.map((message) => messageView(message, this.actions));
    if (nodes.length === 0) {
      const starters = this.starters.length > 0
        ? questionButtons(this.starters, "Suggested questions", "lorechat-starter", (q) => void this.send(q))
        : null;
      nodes.push(h("div", { class: "empty" }, h("p", {}, "Ask anything about this creator's articles, talks and notes."), starters));
    }
    this.els.messages.replaceChildren(...nodes);
    this.els.messages.scrollTop = this.els.messages.scrollHeight;
    if (this.live) this.live.answer = this.answerView(this.live.message);
  }

  private answerView(message: ChatMessage): HTMLElement | null {
    return this.els.messages.querySelector(`[data-message-id="${message.id}"] .answer`);
  }

  private rerender(message: ChatMessage): void {
    const old = this.els.messages.querySelector(`[data-message-id="${message.id}"]`);
    const view = messageView(message, this.actions);
    if (old) old.replaceWith(view);
    else this.renderMessages();
    if (this.live?.message === message) this.live.answer = view.querySelector(".answer");
    this.scrollToEnd();
  }

  private scrollToEnd(): void {
    const box = this.els.messages;
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  }

  private setOpen(open: boolean, moveFocus = true): void {
    this.isOpen = open;
    this.els.panel.hidden = !open;
    if (this.els.launcher) {
      this.els.launcher.setAttribute("aria-expanded", String(open));
      this.els.launcher.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    }
    if (!moveFocus) return;
    if (open) this.els.input.focus();
    else this.els.launcher?.focus();
  }

  private autosize(): void {
    const input = this.els.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 140)}px`;
  }

  private setBusy(busy: boolean): void {
    this.els.send.hidden = busy;
    this.els.stop.hidden = !busy;
    this.els.stop.disabled = false;
    this.els.messages.setAttribute("aria-busy", String(busy));
  }

  // --- actions ------------------------------------------------------------------------------------
  private pickCreator(slug: string | null): void {
    if (slug === this.session.creator) return;
    if (this.session.messages.length > 0) this.newConversation(false);
    this.session.creator = slug;
    saveSession(this.storageKey, this.session);
    this.renderTitle();
    void this.loadStarters();
  }

  private newConversation(focus = true): void {
    if (this.controller) void this.stop();
    clearSession(this.storageKey);
    this.session = emptySession(this.creator);
    this.hideNotice();
    this.renderMessages();
    if (focus) this.els.input.focus();
  }

  private highlightSource(messageId: string, index: number): void {
    const card = this.shadow.getElementById(cardId(messageId, index));
    if (!card) return;
    card.scrollIntoView?.({ block: "nearest", inline: "nearest", behavior: "smooth" });
    card.classList.add("highlight");
    card.focus({ preventScroll: true });
    setTimeout(() => card.classList.remove("highlight"), 2000);
  }

  private retry(messageId: string): void {
    const at = this.session.messages.findIndex((message) => message.id === messageId);
    const question = at > 0 ? this.session.messages[at - 1] : undefined;
    if (!question || question.role !== "user" || this.controller) return;
    removeTurn(this.session, this.session.messages[at]);
    void this.send(question.content);
  }

  async send(text: string): Promise<void> {
    const query = text.trim().slice(0, MAX_QUERY);
    if (!query || this.controller || this.els.send.disabled) return;
    this.hideNotice();
    const assistant: ChatMessage = { id: newId(), role: "assistant", content: "", status: "streaming", sources: [] };
    this.session.messages.push({ id: newId(), role: "user", content: query, status: "done", sources: [] }, assistant);
    this.els.input.value = "";
    this.autosize();
    this.renderMessages();
    const site = this.getAttribute("site");
    const request = {
      query, creator: this.creator, conversation_id: this.session.conversationId, personality_weight: this.weight,
      ...(site ? { site } : {}),
    };
    await this.play(assistant, { request }, (session, outcome) => {
      if (!outcome.rateLimited) return;
      // Nothing was accepted: take the question back into the box and say how long to wait.
      removeTurn(session, assistant);
      this.els.input.value = query;
      this.showRateLimit(outcome.retryAfter);
    });
  }

  /** Stream one answer into `assistant` (busy state, stop button) and settle it; the session is saved. */
  private async play(
    assistant: ChatMessage,
    start: TurnStart,
    settled?: (session: Session, outcome: TurnOutcome) => void,
  ): Promise<void> {
    this.live = { message: assistant, answer: this.answerView(assistant) };
    const controller = new AbortController();
    this.controller = controller;
    this.stopping = false;
    this.setBusy(true);
    // Later events update this turn's session even if the visitor has started a new one meanwhile.
    const session = this.session;
    saveSession(this.storageKey, session);
    try {
      const outcome = await runTurn({
        api: this.api,
        start,
        signal: controller.signal,
        message: assistant,
        hooks: {
          onConversationId: (id) => {
            session.conversationId = id;
            // Saved now, with the message's stream: a reload from here on resumes the answer.
            if (session === this.session) saveSession(this.storageKey, session);
          },
          onSources: () => this.rerender(assistant),
          onText: () => this.scheduleAnswer(),
          stopping: () => this.stopping,
        },
      });
      settled?.(session, outcome);
    } finally {
      // Unless setup() aborted this turn and started another (a resume) that now owns the element.
      if (this.controller === controller) {
        this.controller = null;
        cancelAnimationFrame(this.frame);
        this.frame = 0;
        this.live = null;
        this.setBusy(false);
      }
      saveSession(this.storageKey, this.session);
      if (this.session.messages.includes(assistant)) this.rerender(assistant);
      else this.renderMessages();
    }
  }

  /** Store the visitor's rating on the message and send it; an error message for the row, or null. */
  private async giveFeedback(message: ChatMessage, given: GivenFeedback): Promise<string | null> {
    if (!message.serverId) return "This answer cannot be rated.";
    try {
      await sendFeedback(this.api, message.serverId, given);
    } catch (error) {
      return error instanceof Error ? error.message : "The feedback could not be sent.";
    }
    message.feedback = given;
    saveSession(this.storageKey, this.session);
    return null;
  }

  /** Stop: tell the service (when the conversation is known), then drop the connection. */
  async stop(): Promise<void> {
    const controller = this.controller;
    if (!controller || this.stopping) return;
    this.stopping = true;
    this.els.stop.disabled = true;
    const id = this.session.conversationId;
    if (id) await stopConversation(this.api, id);
    controller.abort();
  }

  private scheduleAnswer(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.live?.answer) fillAnswer(this.live.answer, this.live.message, this.actions);
      this.scrollToEnd();
    });
  }

  private showRateLimit(seconds: number | null): void {
    const notice = this.els.notice;
    clearInterval(this.noticeTimer);
    notice.hidden = false;
    if (!seconds) {
      notice.textContent = "Lots of questions right now. Please wait a moment and try again.";
      return;
    }
    let left = seconds;
    const tick = () => {
      notice.textContent = `You're asking faster than we can answer. Please wait ${formatWait(left)} and try again.`;
      if (left-- <= 0) this.hideNotice();
    };
    this.els.send.disabled = true;
    tick();
    this.noticeTimer = setInterval(tick, 1000);
  }

  private hideNotice(): void {
    clearInterval(this.noticeTimer);
    this.els.notice.hidden = true;
    this.els.send.disabled = false;
  }
}
