// A websocket to /t/<tenant>/ws/events/ that renders each event and reconnects by itself.

const describe = {
  "tenant.state": (d) => `tenant ${d.slug} is ${d.state}${d.reason ? `: ${d.reason}` : ""}`,
  "tenant.suspended": (d) => (d.suspended ? "tenant suspended" : "tenant resumed"),
  "member.added": (d) => `member ${d.username} added as ${d.role}`,
  "member.changed": (d) => `member ${d.username} is now ${d.role}`,
  "member.removed": (d) => `member ${d.username} removed`,
  "token.created": (d) => `token ${d.name} (${d.key_id}) created`,
  "token.revoked": (d) => `token ${d.key_id} revoked`,
  "deployment.step": (d) => `${d.function ? `${d.function}: ` : ""}deployment ${d.deployment}: ${d.state} — ${d.message}`,
  "build.log": (d) => d.line,
  "build.state": (d) => `build ${d.state}${d.reason ? `: ${d.reason}` : ""}`,
  "replay.changed": (d) => `replay ${d.replay}: ${d.state}, ${d.done} of ${d.of}${d.passed === null ? "" : d.passed ? " — passed" : " — failed"}`,
  "rollout.changed": (d) => `rollout ${d.rollout} (${d.alias}) step ${d.step}, ${d.weight}%: ${d.decision.action} — ${d.decision.message}`,
};

function cell(text) {
  return Object.assign(document.createElement("td"), { textContent: text });
}

// A deployments table row as templates/functions/detail.html renders it, for a deployment the
// page has not seen yet (queued after it loaded).
function deploymentRow(data) {
  const row = document.createElement("tr");
  const state = Object.assign(document.createElement("span"), { className: `badge state-${data.state}` });
  state.dataset.deploymentState = data.deployment;
  const steps = document.createElement("small");
  steps.dataset.deploymentSteps = data.deployment;
  const stateCell = document.createElement("td");
  stateCell.append(state);
  const stepsCell = document.createElement("td");
  stepsCell.append(steps);
  const cause = data.state === "queued" ? data.message.replace(/^queued: /, "") : "";
  const when = new Date(data.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  row.append(cell(String(data.deployment)), stateCell, cell(cause), stepsCell, cell(when));
  return row;
}

// Every place the page shows a deployment: its state badge and its steps (with the reason once
// it failed), so the table says what the live feed says without a reload.
function showDeploymentStep(data) {
  const table = document.querySelector("[data-deployments]");
  if (table && !document.querySelector(`[data-deployment-state="${data.deployment}"]`)) {
    table.querySelector("[data-no-deployments]")?.remove();
    table.prepend(deploymentRow(data));
  }
  document.querySelectorAll(`[data-deployment-state="${data.deployment}"]`).forEach((node) => {
    node.textContent = data.state;
    node.className = `badge state-${data.state}`;
  });
  document.querySelectorAll(`[data-deployment-steps="${data.deployment}"]`).forEach((node) => {
    const shown = node.dataset.shown ? node.dataset.shown.split(" ") : node.textContent.split(" → ").map((s) => s.trim()).filter(Boolean);
    if (shown[shown.length - 1] !== data.state) shown.push(data.state);
    node.dataset.shown = shown.join(" ");
    node.textContent = shown.join(" → ");
    if (data.state === "failed") {
      const reason = Object.assign(document.createElement("small"), { className: "state-failed", textContent: data.message });
      node.after(document.createElement("br"), reason);
    }
  });
}

// The workspace header's state (templates/functions/_workspace_state.html) follows the newest
// deployment: words as functions/workspace.py says them.
const UNDER_WAY = {
  queued: "deploying (queued)",
  building: "deploying (building)",
  applying: "deploying (applying)",
  waiting: "deploying (waiting for it to answer)",
};

function showFunctionState(data) {
  const badge = document.querySelector("[data-function-state]");
  if (!badge) return;
  const newest = Number(badge.dataset.deployment || 0);
  if (Number(data.deployment) < newest) return; // an older deployment's late step
  badge.dataset.deployment = data.deployment;
  const state = UNDER_WAY[data.state] ? "deploying" : data.state;
  badge.dataset.functionState = state;
  badge.className = `badge state-${state}`;
  badge.textContent = UNDER_WAY[data.state] || data.state;
  const which = document.querySelector("[data-function-state-deployment]");
  if (which) which.textContent = `deployment ${data.deployment}`;
  const reason = document.querySelector("[data-function-state-reason]");
  if (reason) {
    reason.textContent = data.state === "failed" ? data.message : "";
    reason.className = data.state === "failed" ? "state-failed" : "";
  }
}

function render(element, event) {
  if (event.kind === "pong") return;
  if (event.kind === "tenant.state") {
    document.querySelectorAll("[data-tenant-state]").forEach((node) => {
      node.textContent = event.data.state;
      node.className = `badge state-${event.data.state}`;
    });
  }
  if (event.kind === "deployment.step") {
    showDeploymentStep(event.data);
    showFunctionState(event.data);
  }
  if (event.kind === "replay.changed") {
    document.body.dispatchEvent(new CustomEvent("replay-changed", { detail: event.data }));
  }
  if (event.kind === "rollout.changed") {
    // The rollouts panel reloads itself (hx-trigger="rollout-changed from:body").
    document.body.dispatchEvent(new CustomEvent("rollout-changed", { detail: event.data }));
  }
  const feed = element.querySelector("[data-feed]");
  if (!feed) return;
  const line = document.createElement("li");
  const text = (describe[event.kind] || (() => event.kind))(event.data);
  line.textContent = `${new Date(event.at).toLocaleTimeString()}  ${text}`;
  line.dataset.kind = event.kind;
  feed.prepend(line);
}

export function connectEvents(element, attempt = 0) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}${element.dataset.eventsUrl}`);
  const status = element.querySelector("[data-connection]");
  socket.addEventListener("open", () => {
    attempt = 0;
    if (status) status.textContent = "live";
    element.dataset.connected = "true";
  });
  socket.addEventListener("message", (message) => render(element, JSON.parse(message.data)));
  element.liveSocket = socket; // closed by static/src/main.js when htmx swaps the element out
  socket.addEventListener("close", (close) => {
    element.dataset.connected = "false";
    if (!element.isConnected || element.liveSocket !== socket) return; // swapped out: done
    if (status) status.textContent = "reconnecting…";
    if (close.code === 4404 || close.code === 4403) {
      if (status) status.textContent = "not allowed";
      return;
    }
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(() => connectEvents(element, attempt + 1), delay);
  });
}
