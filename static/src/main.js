// Browser entry point: htmx, and the live websocket feeds of tenant pages.
import htmx from "htmx.org";
import { connectEvents } from "./live.js";

window.htmx = htmx;

document.addEventListener("DOMContentLoaded", () => {
  const switcher = document.querySelector("[data-tenant-switcher]");
  if (switcher) {
    switcher.addEventListener("change", () => {
      if (switcher.value) window.location.assign(`/t/${switcher.value}/`);
    });
  }
  document.querySelectorAll("[data-events-url]").forEach((element) => connectEvents(element));
});
