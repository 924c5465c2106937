// A function's charts (uPlot): drawn from the page's series, then extended by the live metrics
// stream, whose frames carry the totals and the latest step's point.
import uPlot from "uplot";
import { liveSocket } from "./socket.js";

const CHARTS = {
  traffic: { series: ["calls", "errors"], colors: ["#1f6feb", "#cf222e"] },
  latency: { series: ["p50", "p95", "p99"], colors: ["#1a7f37", "#9a6700", "#cf222e"] },
  cold_starts: { series: ["cold_starts"], colors: ["#8250df"] },
};

function draw(node, spec, data) {
  const options = {
    width: Math.max(300, node.clientWidth || 800),
    height: 180,
    series: [{}, ...spec.series.map((label, i) => ({ label, stroke: spec.colors[i], spanGaps: false }))],
    axes: [{}, { size: 60 }],
  };
  return new uPlot(options, data, node);
}

function columns(series, names) {
  const times = (series[names[0]] || []).map((point) => point[0]);
  return [times, ...names.map((name) => (series[name] || []).map((point) => point[1]))];
}

function setTotals(section, totals) {
  const values = { ...totals, ...totals.latency_ms };
  section.querySelectorAll("[data-total]").forEach((node) => {
    const value = values[node.dataset.total];
    if (node.dataset.total === "error_rate") {
      node.textContent = value === null || value === undefined ? "" : `${Math.round(value * 100)}%`;
    } else {
      node.textContent = value === null || value === undefined ? "–" : String(value);
    }
  });
}

export function mountMetrics(section) {
  const initial = JSON.parse(document.getElementById("metrics-series").textContent);
  if (!initial) return;
  const windowSeconds = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
  const plots = {};
  const data = {};
  Object.entries(CHARTS).forEach(([name, spec]) => {
    const node = section.querySelector(`[data-chart="${name}"]`);
    if (!node) return;
    data[name] = columns(initial.series, spec.series);
    plots[name] = draw(node, spec, data[name]);
  });
  const subscription = {
    stream: "metrics",
    function: section.dataset.function,
    range: section.dataset.range,
    interval: Number(section.dataset.interval),
  };
  liveSocket(section, [subscription], (frame) => {
    if (frame.type !== "metrics") return;
    if (frame.error) {
      section.querySelector("[data-connection]").textContent = `metrics unavailable: ${frame.error.message}`;
      return;
    }
    setTotals(section, frame.data.totals);
    section.dataset.lastFrame = String(frame.at);
    const oldest = frame.data.point.t - windowSeconds[frame.data.range];
    Object.entries(CHARTS).forEach(([name, spec]) => {
      if (!plots[name]) return;
      const columnsNow = data[name];
      columnsNow[0].push(frame.data.point.t);
      spec.series.forEach((key, i) => columnsNow[i + 1].push(frame.data.point[key]));
      while (columnsNow[0].length && columnsNow[0][0] < oldest) columnsNow.forEach((column) => column.shift());
      plots[name].setData(columnsNow);
    });
  });
}
