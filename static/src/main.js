// Browser entry point: htmx, the code editor, and the live websocket feeds.
import htmx from "htmx.org";
import { mountAudit } from "./audit.js";
import { mountEditors } from "./editor.js";
import { connectEvents } from "./live.js";
import { mountLogTail } from "./logs.js";
import { mountMetrics } from "./metrics.js";

window.htmx = htmx;

document.addEventListener("DOMContentLoaded", () => {
  const switcher = document.querySelector("[data-tenant-switcher]");
  if (switcher) {
    switcher.addEventListener("change", () => {
      if (switcher.value) window.location.assign(`/t/${switcher.value}/`);
    });
  }
  mountEditors();
  document.querySelectorAll("[data-events-url]").forEach((element) => connectEvents(element));
  document.querySelectorAll("[data-metrics]").forEach((section) => mountMetrics(section));
  document.querySelectorAll("[data-log-tail]").forEach((section) => mountLogTail(section));
  document.querySelectorAll("[data-audit-url]").forEach((section) => mountAudit(section));
});
