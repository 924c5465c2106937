// A function's charts (uPlot): drawn from the page's series, then extended by the live metrics
// stream, whose frames carry the totals and the latest step's point. The page's view is the
// function's totals, or one line per version or per alias (frames then carry a point per line,
// `breakdown`), so a canary can be watched on a chart.
import uPlot from "uplot";
import { liveSocket } from "./socket.js";

const CHARTS = {
  traffic: { series: ["calls", "errors"], colors: ["#1f6feb", "#cf222e"] },
  latency: { series: ["p50", "p95", "p99"], colors: ["#1a7f37", "#9a6700", "#cf222e"] },
  cold_starts: { series: ["cold_starts"], colors: ["#8250df"] },
};
// The per-version or per-alias charts: what a line's point carries, and how it is shown.
const LINE_CHARTS = {
  calls: (value) => value,
  error_rate: (value) => (value === null || value === undefined ? null : Math.round(value * 10000) / 100),
  p95: (value) => (value === null || value === undefined ? null : value),
};
const PALETTE = ["#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a3069", "#57606a"];
const WINDOW_SECONDS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };

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

// As metrics/selectors.py orders lines: versions by number, then the draft; aliases by name.
function lineOrder(a, b) {
  const rank = (key) => (/^v[0-9]+$/.test(key) ? [0, Number(key.slice(1)), ""] : [1, 0, key]);
  const [x, y] = [rank(a), rank(b)];
  return x[0] - y[0] || x[1] - y[1] || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0);
}

function mountTotals(section, initial) {
  const plots = {};
  const data = {};
  Object.entries(CHARTS).forEach(([name, spec]) => {
    const node = section.querySelector(`[data-chart="${name}"]`);
    if (!node) return;
    data[name] = columns(initial.series, spec.series);
    plots[name] = draw(node, spec, data[name]);
  });
  return (frame, oldest) => {
    Object.entries(CHARTS).forEach(([name, spec]) => {
      if (!plots[name]) return;
      const columnsNow = data[name];
      columnsNow[0].push(frame.data.point.t);
      spec.series.forEach((key, i) => columnsNow[i + 1].push(frame.data.point[key]));
      while (columnsNow[0].length && columnsNow[0][0] < oldest) columnsNow.forEach((column) => column.shift());
      plots[name].setData(columnsNow);
    });
  };
}

// One line per version or alias on each of LINE_CHARTS; a key a frame brings for the first time
// (a version that starts taking traffic) redraws the charts with its line added.
function mountLines(section, initial) {
  const keys = initial.lines.map((line) => line.key);
  const times = initial.lines.length ? initial.lines[0].series.calls.map((point) => point[0]) : [];
  const values = {};
  Object.entries(LINE_CHARTS).forEach(([chart, shown]) => {
    values[chart] = {};
    initial.lines.forEach((line) => {
      values[chart][line.key] = line.series[chart].map((point) => shown(point[1]));
    });
  });
  const plots = {};
  const dataOf = (chart) => [times, ...keys.map((key) => values[chart][key])];
  const redraw = () => {
    section.dataset.lines = keys.join(" ");
    Object.keys(LINE_CHARTS).forEach((chart) => {
      const node = section.querySelector(`[data-chart="${chart}"]`);
      if (!node) return;
      if (plots[chart]) plots[chart].destroy();
      const spec = { series: keys, colors: keys.map((_, i) => PALETTE[i % PALETTE.length]) };
      plots[chart] = draw(node, spec, dataOf(chart));
    });
  };
  redraw();
  return (frame, oldest) => {
    const point = frame.data.breakdown || {};
    const added = Object.keys(point).filter((key) => !keys.includes(key));
    added.forEach((key) => {
      keys.push(key);
      Object.keys(LINE_CHARTS).forEach((chart) => {
        values[chart][key] = times.map(() => (chart === "calls" ? 0 : null));
      });
    });
    keys.sort(lineOrder);
    times.push(frame.data.point.t);
    Object.entries(LINE_CHARTS).forEach(([chart, shown]) => {
      keys.forEach((key) => {
        const missing = chart === "calls" ? 0 : null; // no series in the step: no calls
        values[chart][key].push(point[key] ? shown(point[key][chart]) : missing);
      });
    });
    while (times.length && times[0] < oldest) {
      times.shift();
      Object.values(values).forEach((byKey) => Object.values(byKey).forEach((column) => column.shift()));
    }
    if (added.length) {
      redraw();
    } else {
      Object.keys(plots).forEach((chart) => plots[chart].setData(dataOf(chart)));
    }
  };
}

export function mountMetrics(section) {
  const initial = JSON.parse(document.getElementById("metrics-series").textContent);
  if (!initial) return;
  const view = section.dataset.view || "total";
  const extend = view === "total" ? mountTotals(section, initial) : mountLines(section, initial);
  const subscription = {
    stream: "metrics",
    function: section.dataset.function,
    range: section.dataset.range,
    interval: Number(section.dataset.interval),
    ...(view === "total" ? {} : { by: view }),
  };
  liveSocket(section, [subscription], (frame) => {
    if (frame.type !== "metrics") return;
    if (frame.error) {
      section.querySelector("[data-connection]").textContent = `metrics unavailable: ${frame.error.message}`;
      return;
    }
    setTotals(section, frame.data.totals);
    section.dataset.lastFrame = String(frame.at);
    extend(frame, frame.data.point.t - WINDOW_SECONDS[frame.data.range]);
  });
}
