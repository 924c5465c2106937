// Browser entry point: htmx, the code editor, and the live websocket feeds.
import htmx from "htmx.org";
import { mountAudit } from "./audit.js";
import "./copy.js"; // copy buttons ([data-copy]): one document-wide listener
import { mountEditors } from "./editor.js";
import { connectEvents } from "./live.js";
import { mountLogTail } from "./logs.js";
import { mountMetrics } from "./metrics.js";
import "./testpanel.js"; // saved test events: one document-wide listener

window.htmx = htmx;

// A partial that answers a refused form with itself (the form and why, e.g. a 400 or a 409)
// says so with this header: htmx then swaps it in like a 200 instead of dropping it.
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.xhr.getResponseHeader("X-Partial-Answer") === "1") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

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

// A range input that shows its value in an <output>: <input type="range" data-shows="ID">
// (no inline handler: the Content-Security-Policy forbids them).
document.addEventListener("input", (event) => {
  const id = event.target.dataset && event.target.dataset.shows;
  const output = id && document.getElementById(id);
  if (output) output.value = event.target.value;
});
