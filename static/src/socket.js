// One websocket to /t/<tenant>/ws/live/ that subscribes when it opens, and reconnects (with
// backoff and jitter) and subscribes again after a drop, so a page never goes stale.

export function liveSocket(element, subscriptions, onFrame, attempt = 0) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}${element.dataset.liveUrl}`);
  const status = element.querySelector("[data-connection]");
  const show = (text) => {
    if (status) status.textContent = text;
  };
  socket.addEventListener("open", () => {
    attempt = 0;
    subscriptions.forEach((subscription, index) =>
      socket.send(JSON.stringify({ type: "subscribe", id: String(index), ...subscription })),
    );
  });
  socket.addEventListener("message", (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "subscribed") {
      show("live");
      element.dataset.connected = "true";
    } else if (frame.type === "error") {
      show(`error: ${frame.error.message}`);
    } else {
      onFrame(frame);
    }
  });
  socket.addEventListener("close", (close) => {
    element.dataset.connected = "false";
    if (!element.isConnected || element.liveSocket !== socket) return; // swapped out: done
    if (close.code === 4404 || close.code === 4403) {
      show("not allowed");
      return;
    }
    show("reconnecting…");
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(() => liveSocket(element, subscriptions, onFrame, attempt + 1), delay);
  });
  element.liveSocket = socket;
  return socket;
}
