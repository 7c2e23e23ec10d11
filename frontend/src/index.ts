// Entry point of dist/widget.js: defines <lorechat-widget> once, whatever loads the file.
import { LorechatWidget } from "./widget";

if (typeof customElements !== "undefined" && !customElements.get("lorechat-widget")) {
  customElements.define("lorechat-widget", LorechatWidget);
}

export { LorechatWidget };
