// The widget's stylesheet, scoped by its shadow root; pages theme it through --lorechat-* properties.
export const STYLES = `
:host {
  --lc-accent: var(--lorechat-accent, #4f46e5);
  --lc-bg: var(--lorechat-bg, #ffffff);
  --lc-fg: var(--lorechat-fg, #1f2330);
  --lc-font: var(--lorechat-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  --lc-radius: var(--lorechat-radius, 14px);
  --lc-muted: color-mix(in srgb, var(--lc-fg) 60%, var(--lc-bg));
  --lc-line: color-mix(in srgb, var(--lc-fg) 14%, var(--lc-bg));
  --lc-soft: color-mix(in srgb, var(--lc-fg) 5%, var(--lc-bg));
  --lc-accent-soft: color-mix(in srgb, var(--lc-accent) 12%, var(--lc-bg));
  display: block;
  font-family: var(--lc-font);
  color: var(--lc-fg);
  font-size: 15px;
  line-height: 1.5;
}
:host([mode="launcher"]) { display: contents; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
button, select, textarea, input { font: inherit; color: inherit; }
button { cursor: pointer; }
:focus-visible { outline: 2px solid var(--lc-accent); outline-offset: 2px; }

.launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 56px; height: 56px;
  border-radius: 50%; border: 0; background: var(--lc-accent); color: #fff;
  box-shadow: 0 8px 24px rgb(0 0 0 / 0.22); display: grid; place-items: center; }
.launcher svg { width: 26px; height: 26px; }

.panel { display: flex; flex-direction: column; background: var(--lc-bg); color: var(--lc-fg);
  border: 1px solid var(--lc-line); border-radius: var(--lc-radius); overflow: hidden; min-height: 420px; }
.inline .panel { height: var(--lorechat-height, 600px); max-height: 100%; }
.floating .panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
  width: min(420px, calc(100vw - 24px)); height: min(640px, calc(100vh - 110px));
  box-shadow: 0 18px 48px rgb(0 0 0 / 0.22); }
@media (max-width: 480px) {
  .floating .panel { right: 8px; left: 8px; bottom: 80px; width: auto; height: calc(100vh - 96px); }
  .launcher { right: 12px; bottom: 12px; }
}

header { display: flex; align-items: center; gap: 8px; padding: 10px 12px; border-bottom: 1px solid var(--lc-line);
  flex-wrap: wrap; }
header h2 { font-size: 1rem; margin: 0; flex: 1 1 auto; min-width: 0; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.icon-btn { border: 1px solid var(--lc-line); background: var(--lc-bg); border-radius: 8px; padding: 4px 10px;
  font-size: 0.85rem; }
.icon-btn:hover { background: var(--lc-soft); }
.options { display: flex; gap: 12px; padding: 8px 12px; border-bottom: 1px solid var(--lc-line); flex-wrap: wrap;
  align-items: center; font-size: 0.85rem; }
.options:empty { display: none; }
.options label { display: flex; gap: 6px; align-items: center; color: var(--lc-muted); }
.options select { border: 1px solid var(--lc-line); border-radius: 8px; padding: 3px 6px; background: var(--lc-bg);
  max-width: 180px; }
.options input[type="range"] { accent-color: var(--lc-accent); width: 110px; }

/* Inline-size containment: a long code line or a row of source cards scrolls inside the widget instead of
   widening it, and so the page around it (a grid column sized to its content would otherwise grow). */
.messages { flex: 1 1 auto; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 14px;
  contain: inline-size; }
.empty { color: var(--lc-muted); text-align: center; margin: auto 0; font-size: 0.9rem; padding: 0 12px; }
.msg-user { align-self: flex-end; max-width: 85%; background: var(--lc-accent); color: #fff; padding: 8px 12px;
  border-radius: var(--lc-radius) var(--lc-radius) 4px var(--lc-radius); white-space: pre-wrap;
  overflow-wrap: anywhere; }
.msg-assistant { align-self: stretch; display: flex; flex-direction: column; gap: 8px; }

.sources { display: flex; gap: 8px; overflow-x: auto; padding-bottom: 4px; margin: 0; list-style: none;
  padding-left: 0; scroll-snap-type: x proximity; }
.card { flex: 0 0 min(220px, 78%); scroll-snap-align: start; border: 1px solid var(--lc-line);
  border-radius: calc(var(--lc-radius) * 0.7); padding: 8px 10px; background: var(--lc-soft); font-size: 0.8rem;
  transition: box-shadow 0.2s, border-color 0.2s; }
.card.quoting { border-color: var(--lc-accent); }
.card mark.quote { background: var(--lc-accent-soft); color: inherit; border-radius: 2px; }
.claim-unsupported { text-decoration: underline dotted; text-decoration-color: #b7791f; text-underline-offset: 3px; }
.cite.unsupported { background: transparent; outline: 1px dashed #b7791f; }
.card.highlight { border-color: var(--lc-accent); box-shadow: 0 0 0 3px var(--lc-accent-soft); }
.card .num { display: inline-block; min-width: 1.6em; text-align: center; border-radius: 6px;
  background: var(--lc-accent); color: #fff; font-weight: 600; margin-right: 4px; font-size: 0.75rem; }
.card .title { font-weight: 600; color: var(--lc-fg); text-decoration: none; overflow-wrap: anywhere; }
.card a.title:hover { text-decoration: underline; }
.card .meta { color: var(--lc-muted); margin-top: 2px; }
.card .snippet { margin: 4px 0 0; color: var(--lc-muted); display: -webkit-box; -webkit-line-clamp: 3;
  -webkit-box-orient: vertical; overflow: hidden; overflow-wrap: anywhere; }

.answer { overflow-wrap: anywhere; }
.answer > :first-child { margin-top: 0; }
.answer > :last-child { margin-bottom: 0; }
.answer p, .answer ul, .answer ol, .answer pre, .answer blockquote { margin: 0 0 0.6em; }
.answer ul, .answer ol { padding-left: 1.3em; }
.answer .md-heading { font-weight: 700; }
.answer code { background: var(--lc-soft); border: 1px solid var(--lc-line); border-radius: 4px;
  padding: 0 3px; font-size: 0.88em; }
.answer pre { background: var(--lc-soft); border: 1px solid var(--lc-line); border-radius: 8px; padding: 8px;
  overflow-x: auto; }
.answer pre code { border: 0; padding: 0; background: none; }
.answer blockquote { border-left: 3px solid var(--lc-line); padding-left: 10px; color: var(--lc-muted); }
.answer a { color: var(--lc-accent); }
.cite { border: 0; background: var(--lc-accent-soft); color: var(--lc-accent); border-radius: 4px; padding: 0 3px;
  font-size: 0.78em; font-weight: 600; vertical-align: super; line-height: 1; margin: 0 1px; }
.streaming .answer:empty::after, .streaming .answer > :last-child::after { content: "▍"; opacity: 0.6;
  animation: blink 1s steps(2) infinite; }
@keyframes blink { 50% { opacity: 0; } }
@media (prefers-reduced-motion: reduce) { .streaming .answer > :last-child::after { animation: none; } }

.curated { margin: 0; font-size: 0.75rem; font-weight: 600; color: var(--lc-accent); }
.suggestions { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 6px; }
.empty .suggestions { justify-content: center; margin-top: 12px; }
.suggestion { border: 1px solid var(--lc-line); background: var(--lc-soft); border-radius: 999px; padding: 5px 12px;
  font-size: 0.85rem; text-align: left; color: var(--lc-fg); }
.suggestion:hover { border-color: var(--lc-accent); background: var(--lc-accent-soft); }
.icon-btn svg { width: 16px; height: 16px; display: block; }
.feedback { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 0.8rem; color: var(--lc-muted); }
.feedback .fb[aria-pressed="true"] { background: var(--lc-accent-soft); border-color: var(--lc-accent); }
.fb-comment { display: flex; gap: 6px; flex: 1 1 100%; }
.fb-comment textarea { flex: 1; min-width: 0; resize: vertical; border: 1px solid var(--lc-line); border-radius: 8px;
  padding: 4px 8px; background: var(--lc-bg); }
.status { font-size: 0.8rem; color: var(--lc-muted); display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.error { color: #b42318; background: color-mix(in srgb, #b42318 8%, var(--lc-bg)); border-radius: 8px;
  padding: 6px 10px; font-size: 0.85rem; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.notice { margin: 0 12px 8px; padding: 8px 10px; border-radius: 8px; font-size: 0.85rem;
  background: color-mix(in srgb, #b54708 10%, var(--lc-bg)); color: #93370d; }

form { display: flex; gap: 8px; padding: 10px 12px; border-top: 1px solid var(--lc-line); align-items: flex-end; }
textarea { flex: 1 1 auto; resize: none; min-height: 40px; max-height: 140px; border: 1px solid var(--lc-line);
  border-radius: 10px; padding: 8px 10px; background: var(--lc-bg); }
.primary { background: var(--lc-accent); color: #fff; border: 0; border-radius: 10px; padding: 9px 14px;
  font-weight: 600; }
.primary:disabled { opacity: 0.5; cursor: not-allowed; }
.secondary { background: var(--lc-bg); border: 1px solid var(--lc-line); border-radius: 10px; padding: 8px 12px; }
.footer { font-size: 0.7rem; color: var(--lc-muted); text-align: center; padding: 0 0 6px; }
`;
