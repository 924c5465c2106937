// A function's charts (uPlot): drawn from the page's series, then extended by the live metrics
// stream, whose frames carry the totals and the latest step's point. The page's view is the
// function's totals, or one line per version or per alias (frames then carry a point per line,
// `breakdown`), so a canary can be watched on a chart.
import uPlot from "uplot";
import { liveSocket } from "./socket.js";

const CHARTS = {
  traffic: { series: ["calls", "errors"], colors: ["#1f6feb", "#cf222e"], unit: "calls" },
  latency: { series: ["p50", "p95", "p99"], colors: ["#1a7f37", "#9a6700", "#cf222e"], unit: "ms" },
  cold_starts: { series: ["cold_starts"], colors: ["#8250df"], unit: "cold starts" },
};
// The unit each per-line chart's values are in (its tooltip says it).
const LINE_UNITS = { calls: "calls", error_rate: "%", p95: "ms" };
// The per-version or per-alias charts: what a line's point carries, and how it is shown.
const LINE_CHARTS = {
  calls: (value) => value,
  error_rate: (value) => (value === null || value === undefined ? null : Math.round(value * 10000) / 100),
  p95: (value) => (value === null || value === undefined ? null : value),
};
const PALETTE = ["#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a3069", "#57606a"];
const WINDOW_SECONDS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };

// A moment as the tooltip and legend show it: to the second (steps are as short as 1 s), with
// the date when the range spans days.
function moment(seconds, withDate) {
  if (seconds === null || seconds === undefined) return "–";
  const at = new Date(seconds * 1000);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return withDate ? `${at.toLocaleDateString()} ${time}` : time;
}

function shown(value, unit) {
  if (value === null || value === undefined) return "no calls";
  const rounded = Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
  return unit === "%" ? `${rounded} %` : `${rounded} ${unit}`;
}

// Points only where a value stands alone between gaps: a line needs two neighbours, so such a
// value would otherwise not be drawn at all; everywhere else the line is enough, and a step
// without calls stays a gap (no dot, no line).
function isolated(u, seriesIndex) {
  const values = u.data[seriesIndex];
  const alone = [];
  for (let i = 0; i < values.length; i++) {
    const before = i === 0 ? null : values[i - 1];
    const after = i === values.length - 1 ? null : values[i + 1];
    if (values[i] !== null && values[i] !== undefined && before == null && after == null) alone.push(i);
  }
  return alone;
}

// A box beside the cursor: the step's time to the second and every line's exact value.
function tooltipPlugin(unit, withDate) {
  let box;
  return {
    hooks: {
      init: (u) => {
        box = document.createElement("div");
        box.className = "chart-tooltip";
        box.setAttribute("role", "tooltip");
        box.hidden = true;
        u.over.appendChild(box);
        u.over.addEventListener("mouseleave", () => {
          box.hidden = true;
        });
      },
      setCursor: (u) => {
        const { idx, left, top } = u.cursor;
        if (idx === null || idx === undefined || left < 0) {
          box.hidden = true;
          return;
        }
        const rows = [moment(u.data[0][idx], withDate)];
        u.series.forEach((series, i) => {
          if (i > 0 && series.show) rows.push(`${series.label}: ${shown(u.data[i][idx], unit)}`);
        });
        box.replaceChildren(...rows.map((text, i) => Object.assign(document.createElement(i ? "div" : "strong"), { textContent: text })));
        box.hidden = false;
        const flip = left > u.over.clientWidth / 2;
        box.style.left = flip ? "" : `${left + 12}px`;
        box.style.right = flip ? `${u.over.clientWidth - left + 12}px` : "";
        box.style.top = `${Math.max(0, top - 10)}px`;
      },
    },
  };
}

function draw(node, spec, data, range) {
  const withDate = WINDOW_SECONDS[range] > 86400;
  const options = {
    width: Math.max(300, node.clientWidth || 800),
    height: 180,
    series: [
      { value: (u, seconds) => moment(seconds, withDate) },
      ...spec.series.map((label, i) => ({
        label,
        stroke: spec.colors[i],
        spanGaps: false,
        points: { show: true, size: 6, filter: isolated },
        value: (u, value) => shown(value, spec.unit),
      })),
    ],
    axes: [{}, { size: 60 }],
    plugins: [tooltipPlugin(spec.unit, withDate)],
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

// The "By version" table, as the server renders it (templates/metrics/function.html), from a
// frame's per-version counts over the range.
function setVersions(section, rows) {
  const body = section.querySelector("[data-breakdown] tbody");
  if (!body || !rows) return;
  const cells = (values) => {
    const row = document.createElement("tr");
    values.forEach((value) => row.appendChild(Object.assign(document.createElement("td"), { textContent: String(value) })));
    return row;
  };
  if (!rows.length) {
    const empty = cells([`No calls in the last ${section.dataset.range}.`]);
    empty.firstChild.colSpan = 3;
    body.replaceChildren(empty);
    return;
  }
  body.replaceChildren(...rows.map((row) => cells([row.key, row.calls, row.errors])));
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
    plots[name] = draw(node, spec, data[name], section.dataset.range);
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
      const colors = keys.map((_, i) => PALETTE[i % PALETTE.length]);
      const spec = { series: keys, colors, unit: LINE_UNITS[chart] };
      plots[chart] = draw(node, spec, dataOf(chart), section.dataset.range);
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
  // The section's own data: a late answer of the Monitor tab's loader may land after the tab
  // was left, in a section no longer in the page.
  const script = section.querySelector("script#metrics-series");
  const initial = script && JSON.parse(script.textContent);
  if (!initial || !section.isConnected) return;
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
    setVersions(section, frame.data.versions);
    section.dataset.lastFrame = String(frame.at);
    extend(frame, frame.data.point.t - WINDOW_SECONDS[frame.data.range]);
  });
}
