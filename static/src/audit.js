// The audit page's live rows: each new record of the trail, pushed over the websocket
// (/t/<tenant>/ws/audit/ or /ws/platform/audit/), prepended when it matches the page's filters
// (the rules of audit/selectors.py). Rows are built with textContent only, as the page renders
// them (templates/tenants/audit.html).

const AGENT_CHARS = 32;

function matches(record, filters) {
  if (filters.actor && record.actor_name !== filters.actor && record.token_id !== filters.actor) return false;
  if (filters.objectType && record.object_type !== filters.objectType) return false;
  if (filters.object && !record.object_name.startsWith(filters.object)) return false;
  if (filters.action) {
    const prefix = filters.action.endsWith(".");
    if (prefix ? !record.action.startsWith(filters.action) : record.action !== filters.action) return false;
  }
  const at = new Date(record.at);
  if (filters.since && at < new Date(filters.since)) return false;
  if (filters.until && at >= new Date(filters.until)) return false;
  return true;
}

// A setting's value as the page shows it: text as it is, nothing as "—", anything else as JSON.
function shown(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function cell(row, ...parts) {
  const td = document.createElement("td");
  parts.filter(Boolean).forEach((part) => td.append(part));
  row.appendChild(td);
  return td;
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  node.textContent = text;
  Object.entries(attributes).forEach(([name, value]) => node.setAttribute(name, value));
  return node;
}

function short(text) {
  return text.length > AGENT_CHARS ? `${text.slice(0, AGENT_CHARS - 1)}…` : text;
}

function buildRow(record, tenantView) {
  const row = document.createElement("tr");
  row.dataset.record = String(record.id);
  row.dataset.live = "true";
  cell(row, element("small", record.at.replace("T", " ").slice(0, 19)));
  cell(
    row,
    record.actor_name,
    record.token_id && " ",
    record.token_id && element("small", `token ${record.token_id}`),
    tenantView && record.chain === 0 && " ",
    tenantView && record.chain === 0 && element("span", "platform", { class: "badge" }),
  );
  const from = cell(row, record.ip || "—");
  if (record.user_agent) {
    from.append(document.createElement("br"), element("small", short(record.user_agent), { title: record.user_agent }));
  }
  cell(row, element("code", record.action));
  cell(row, record.object_name, " ", element("small", record.object_type));
  const changes = element("ul", "", { class: "changes" });
  Object.entries(record.changes).forEach(([name, [before, after]]) => {
    const item = document.createElement("li");
    item.append(element("code", name), `: ${shown(before)} → ${shown(after)}`);
    changes.appendChild(item);
  });
  cell(row, changes);
  cell(row, record.effects.join(", "));
  return row;
}

function retryDelay(attempt) {
  return Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
}

export function mountAudit(section, attempt = 0) {
  const data = section.dataset;
  const filters = {
    actor: data.filterActor, objectType: data.filterObjectType, object: data.filterObject,
    action: data.filterAction, since: data.filterSince, until: data.filterUntil,
  };
  const rows = section.querySelector("[data-audit-rows]");
  const status = section.querySelector("[data-connection]");
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}${data.auditUrl}`);
  socket.addEventListener("open", () => {
    attempt = 0;
    // Records committed while the socket was down were never pushed: say so rather than guess.
    status.textContent = data.wasLost ? "live again: reload for records made while disconnected" : "live";
    data.connected = "true";
  });
  socket.addEventListener("message", (message) => {
    const event = JSON.parse(message.data);
    if (event.kind !== "audit.recorded" || !matches(event.data, filters)) return;
    if (rows.querySelector(`tr[data-record="${event.data.id}"]`)) return; // already on the page
    rows.querySelectorAll("[data-empty]").forEach((node) => node.remove());
    rows.prepend(buildRow(event.data, "tenantView" in data));
  });
  socket.addEventListener("close", (close) => {
    data.connected = "false";
    if (close.code === 4404 || close.code === 4403) {
      status.textContent = "not allowed";
      return;
    }
    status.textContent = "reconnecting…";
    data.wasLost = "true";
    setTimeout(() => mountAudit(section, attempt + 1), retryDelay(attempt));
  });
}
