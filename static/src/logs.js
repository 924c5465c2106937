// The live log tail: each line a function prints, pushed over the websocket, newest on top.
import { liveSocket } from "./socket.js";

const MAX_LINES = 500;

function cell(row, text, tag = "td") {
  const node = document.createElement(tag);
  node.textContent = text;
  row.appendChild(node);
  return node;
}

export function mountLogTail(section) {
  const lines = section.querySelector("[data-log-lines]");
  const subscription = { stream: "logs" };
  if (section.dataset.function) subscription.function = section.dataset.function;
  if (section.dataset.version) subscription.version = section.dataset.version;
  if (section.dataset.logStream) subscription.log_stream = section.dataset.logStream;
  liveSocket(section, [subscription], (frame) => {
    if (frame.type !== "logs") return;
    frame.records.forEach((record) => {
      const row = document.createElement("tr");
      row.dataset.requestId = record.request_id;
      cell(row, new Date(record.time * 1000).toISOString().replace("T", " ").slice(0, 23));
      cell(row, record.version ? `${record.function} ${record.version}` : record.function);
      cell(row, record.stream);
      cell(row, record.request_id.slice(0, 12));
      const message = document.createElement("code");
      message.textContent = record.message; // never innerHTML: a function prints what it likes
      cell(row, "").appendChild(message);
      lines.prepend(row);
    });
    while (lines.children.length > MAX_LINES) lines.lastElementChild.remove();
  });
}
