// The logs page (templates/metrics/logs.html): lines grouped by request, each request's lines in
// the order they were written (a traceback reads top to bottom), stderr marked, times and the
// date-time pickers in the browser's time zone, and the live tail, where each line pushed over
// the websocket joins its request's group.
import { liveSocket } from "./socket.js";

const MAX_GROUPS = 200;
const MAX_LINES_PER_GROUP = 1000;

const pad = (number, width = 2) => String(number).padStart(width, "0");

function localDate(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function localClock(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// "2026-12-01 10:00:00" (format "datetime") or "10:00:00.123" ("time"), in the browser's zone.
function localTime(epochSeconds, format) {
  const date = new Date(epochSeconds * 1000);
  if (format === "time") return `${localClock(date)}.${pad(date.getMilliseconds(), 3)}`;
  return `${localDate(date)} ${localClock(date)}`;
}

function timeElement(epochSeconds, format) {
  const node = document.createElement("time");
  node.dataset.epoch = String(epochSeconds);
  node.dataset.format = format;
  node.dateTime = new Date(epochSeconds * 1000).toISOString();
  node.textContent = localTime(epochSeconds, format);
  return node;
}

function zoneName() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}

// The server writes times in UTC; the person reads them in their own time zone.
function localizeTimes(root) {
  root.querySelectorAll("time[data-epoch]").forEach((node) => {
    node.textContent = localTime(Number(node.dataset.epoch), node.dataset.format);
  });
  root.querySelectorAll("[data-time-zone]").forEach((node) => {
    node.textContent = node.closest("th") ? `(${zoneName()})` : `in your time zone (${zoneName()})`;
  });
}

// -- the filters: date-time pickers read in the browser's time zone, sent in UTC -------------

function mountFilters(form) {
  form.querySelectorAll("input[data-moment]").forEach((input) => {
    if (input.dataset.utc) {
      const date = new Date(input.dataset.utc);
      input.value = `${localDate(date)}T${localClock(date)}`;
    }
  });
  let quickRange = false;
  form.addEventListener("submit", (event) => {
    quickRange = Boolean(event.submitter && event.submitter.name === "last");
  });
  form.addEventListener("formdata", (event) => {
    const data = event.formData;
    form.querySelectorAll("input[data-moment]").forEach((input) => {
      const moment = new Date(input.value); // a value without an offset is local time
      if (quickRange || !input.value) data.delete(input.name);
      else if (!Number.isNaN(moment.getTime())) data.set(input.name, moment.toISOString());
    });
    [...data.keys()].filter((key) => data.get(key) === "").forEach((key) => data.delete(key));
  });
}

// -- groups ----------------------------------------------------------------------------------

function requestLink(requestId) {
  const link = document.createElement("a");
  link.href = `?${new URLSearchParams({ request: requestId })}`;
  link.className = "request-id";
  link.dataset.requestLink = "";
  link.title = "This request's lines";
  const code = document.createElement("code");
  code.textContent = requestId;
  link.appendChild(code);
  return link;
}

function outsideNote() {
  const note = document.createElement("small");
  note.textContent = "outside a request";
  return note;
}

function cell(row, ...children) {
  const node = document.createElement("td");
  node.append(...children);
  row.appendChild(node);
  return node;
}

function groupRow(record) {
  const row = document.createElement("tr");
  row.dataset.logGroup = "";
  row.dataset.requestId = record.request_id;
  row.dataset.function = record.function;
  row.dataset.version = record.version;
  cell(row, timeElement(record.time, "datetime"));
  const where = cell(row, record.function);
  if (record.version) {
    const version = document.createElement("small");
    version.textContent = record.version;
    where.append(" ", version);
  }
  cell(row, record.request_id ? requestLink(record.request_id) : outsideNote()).className = "request";
  const lines = document.createElement("ol");
  lines.className = "log-lines";
  cell(row, lines);
  return row;
}

function lineItem(record) {
  const item = document.createElement("li");
  item.className = `log-line stream-${record.stream}`;
  item.dataset.stream = record.stream;
  item.appendChild(timeElement(record.time, "time"));
  if (record.stream === "stderr") {
    const badge = document.createElement("span");
    badge.className = "badge stream-badge";
    badge.textContent = "stderr";
    item.append(" ", badge);
  }
  const message = document.createElement("code");
  message.textContent = record.message; // never innerHTML: a function prints what it likes
  item.append(" ", message);
  return item;
}

function sameFunction(row, record) {
  return row.dataset.function === record.function && row.dataset.version === record.version;
}

// The group a live line joins: its request's (on the live list or among the results), or for
// a line outside any request the live list's newest group when that is one of the same function.
function groupOf(bodies, record) {
  if (!record.request_id) {
    const newest = bodies[0].firstElementChild;
    return newest && !newest.dataset.requestId && sameFunction(newest, record) ? newest : null;
  }
  const selector = `tr[data-log-group][data-request-id="${CSS.escape(record.request_id)}"]`;
  for (const body of bodies) {
    const row = [...body.querySelectorAll(selector)].find((found) => sameFunction(found, record));
    if (row) return row;
  }
  return null;
}

// In the order written: after the last line that is not later than it.
function insertLine(lines, item, time) {
  let before = null;
  for (let node = lines.lastElementChild; node; node = node.previousElementSibling) {
    if (Number(node.querySelector("time").dataset.epoch) <= time) break;
    before = node;
  }
  lines.insertBefore(item, before);
  while (lines.children.length > MAX_LINES_PER_GROUP) lines.firstElementChild.remove();
}

function addRecord(bodies, record) {
  let row = groupOf(bodies, record);
  if (!row) {
    row = groupRow(record);
    bodies[0].prepend(row); // the newest request on top
  }
  insertLine(row.querySelector("ol.log-lines"), lineItem(record), record.time);
}

export function mountLogTail(section) {
  localizeTimes(document);
  const form = document.querySelector("form[data-log-filters]");
  if (form) mountFilters(form);
  const live = section.querySelector("[data-log-lines]");
  const results = document.querySelector("[data-log-results] tbody");
  const bodies = results ? [live, results] : [live];
  const subscription = { stream: "logs" };
  if (section.dataset.function) subscription.function = section.dataset.function;
  if (section.dataset.version) subscription.version = section.dataset.version;
  if (section.dataset.logStream) subscription.log_stream = section.dataset.logStream;
  if (section.dataset.request) subscription.request = section.dataset.request;
  liveSocket(section, [subscription], (frame) => {
    if (frame.type !== "logs") return;
    frame.records.forEach((record) => addRecord(bodies, record));
    while (live.children.length > MAX_GROUPS) live.lastElementChild.remove();
  });
}
