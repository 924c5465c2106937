// A websocket to /t/<tenant>/ws/events/ that renders each event and reconnects by itself.

const describe = {
  "tenant.state": (d) => `tenant ${d.slug} is ${d.state}${d.reason ? `: ${d.reason}` : ""}`,
  "tenant.suspended": (d) => (d.suspended ? "tenant suspended" : "tenant resumed"),
  "member.added": (d) => `member ${d.username} added as ${d.role}`,
  "member.changed": (d) => `member ${d.username} is now ${d.role}`,
  "member.removed": (d) => `member ${d.username} removed`,
  "token.created": (d) => `token ${d.name} (${d.key_id}) created`,
  "token.revoked": (d) => `token ${d.key_id} revoked`,
  "deployment.step": (d) => `deployment ${d.deployment}: ${d.state} — ${d.message}`,
  "build.log": (d) => d.line,
  "build.state": (d) => `build ${d.state}${d.reason ? `: ${d.reason}` : ""}`,
  "replay.changed": (d) => `replay ${d.replay}: ${d.state}, ${d.done} of ${d.of}${d.passed === null ? "" : d.passed ? " — passed" : " — failed"}`,
  "rollout.changed": (d) => `rollout ${d.rollout} (${d.alias}) step ${d.step}, ${d.weight}%: ${d.decision.action} — ${d.decision.message}`,
};

function render(element, event) {
  if (event.kind === "pong") return;
  if (event.kind === "tenant.state") {
    document.querySelectorAll("[data-tenant-state]").forEach((node) => {
      node.textContent = event.data.state;
      node.className = `badge state-${event.data.state}`;
    });
  }
  if (event.kind === "deployment.step") {
    document.querySelectorAll(`[data-deployment-state="${event.data.deployment}"]`).forEach((node) => {
      node.textContent = event.data.state;
      node.className = `badge state-${event.data.state}`;
    });
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
  socket.addEventListener("close", (close) => {
    element.dataset.connected = "false";
    if (status) status.textContent = "reconnecting…";
    if (close.code === 4404 || close.code === 4403) {
      if (status) status.textContent = "not allowed";
      return;
    }
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(() => connectEvents(element, attempt + 1), delay);
  });
}
