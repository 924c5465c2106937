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
// The Content-Security-Policy (portal/settings.py) refuses inline styles: htmx's indicator rules
// are in main.css instead of the <style> htmx would add when the page is ready (after this runs:
// the bundle is a deferred script).
htmx.config.includeIndicatorStyles = false;

// A partial that answers a refused form with itself (the form and why, e.g. a 400 or a 409)
// says so with this header: htmx then swaps it in like a 200 instead of dropping it.
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.xhr.getResponseHeader("X-Partial-Answer") === "1") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// The workspace's tab panel asks for itself alone (functions/workspace.py answers with
// X-Workspace-Panel); any other answer is a whole page, never nested in the panel: an error
// page (403, 404, 413 …) replaces the page's body, as a browser would show it; a page
// elsewhere (a redirect) is gone to.
document.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  if (event.detail.target?.id !== "tab-panel" || xhr.getResponseHeader("X-Workspace-Panel") === "1") return;
  event.detail.shouldSwap = false;
  if (xhr.status < 400) {
    window.location.assign(xhr.responseURL || window.location.href);
    return;
  }
  document.querySelectorAll("*").forEach((node) => node.liveSocket?.close(1000)); // the page goes
  const answer = new DOMParser().parseFromString(xhr.responseText, "text/html");
  document.title = answer.title;
  document.body.replaceChildren(...answer.body.childNodes);
});

// Everything a page (or a part htmx swapped in) starts: editors, live feeds, charts.
function mount(root) {
  if (root !== document && !root.isConnected) return; // swapped in, then out again already
  const within = (selector) => [...(root.matches?.(selector) ? [root] : []), ...root.querySelectorAll(selector)];
  mountEditors(root);
  within("[data-events-url]").forEach((element) => connectEvents(element));
  within("[data-metrics]").forEach((section) => mountMetrics(section));
  within("[data-log-tail]").forEach((section) => mountLogTail(section));
  within("[data-audit-url]").forEach((section) => mountAudit(section));
}

document.addEventListener("DOMContentLoaded", () => {
  const switcher = document.querySelector("[data-tenant-switcher]");
  if (switcher) {
    switcher.addEventListener("change", () => {
      if (switcher.value) window.location.assign(`/t/${switcher.value}/`);
    });
  }
  mount(document);
  // After the first load, each swap mounts what it brought (a tab, a panel).
  document.addEventListener("htmx:load", (event) => {
    if (event.detail.elt !== document.body) mount(event.detail.elt);
  });
});

// A part swapped out closes its websockets (static/src/socket.js keeps them on the element).
document.addEventListener("htmx:beforeCleanupElement", (event) => {
  const socket = event.detail.elt.liveSocket;
  if (socket) {
    event.detail.elt.liveSocket = null;
    socket.close(1000);
  }
});

// A range input that shows its value in an <output>: <input type="range" data-shows="ID">
// (no inline handler: the Content-Security-Policy forbids them).
document.addEventListener("input", (event) => {
  const id = event.target.dataset && event.target.dataset.shows;
  const output = id && document.getElementById(id);
  if (output) output.value = event.target.value;
});
