// langroute dashboard: reads the JSON endpoints under api/ and draws SVG charts.
// Everything that comes from the ledger is put on the page with textContent or as an
// SVG attribute value, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#9ca3af"];
const loaded = {};
let windowSeconds = 3600;
let decisionsOffset = 0;

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function usd(value) {
  if (value === null || value === undefined) return "n/a";
  if (value !== 0 && Math.abs(value) < 0.01) return "$" + value.toFixed(6);
  return "$" + value.toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
}
function pct(value) { return value === null || value === undefined ? "n/a" : (100 * value).toFixed(1) + "%"; }
function ms(value) { return value === null || value === undefined ? "-" : Math.round(value).toLocaleString("en-US"); }
function count(value) { return value === null || value === undefined ? "-" : Number(value).toLocaleString("en-US"); }
function when(text) { return text ? text.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, "") : ""; }
function color(index) { return COLORS[index % COLORS.length]; }

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path) {
  const headers = {};
  const key = sessionStorage.getItem("langroute-dashboard-key");
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch("api/" + path, { headers });
  if (response.status === 401 || response.status === 403) {
    document.getElementById("login").hidden = false;
    const body = await response.json().catch(() => ({}));
    const detail = body.error && body.error.message ? body.error.message : body.detail || body.error || "";
    document.getElementById("login-error").textContent = typeof detail === "string" ? detail : "";
    throw new Error("an admin key is needed");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(typeof body.error === "string" ? body.error : body.detail || response.statusText);
  return body;
}

function table(node, columns, rows, onRow) {
  node.replaceChildren();
  const head = el("tr");
  for (const column of columns) head.append(el("th", { class: column.num ? "num" : null }, column.title));
  node.append(el("thead", {}, head));
  const body = el("tbody");
  for (const row of rows) {
    const line = el("tr");
    for (const column of columns) {
      const value = column.value(row);
      const cell = el("td", { class: column.num ? "num" : null });
      cell.append(value instanceof Node ? value : document.createTextNode(value == null ? "" : String(value)));
      line.append(cell);
    }
    if (onRow) line.addEventListener("click", () => onRow(row));
    body.append(line);
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "nothing recorded")));
  node.append(body);
}

// ------------------------------------------------------------------ charts

function tooltip(event, text) {
  const tip = document.getElementById("tooltip");
  tip.textContent = text;
  tip.style.left = event.clientX + 12 + "px";
  tip.style.top = event.clientY + 12 + "px";
  tip.hidden = false;
}
function hideTooltip() { document.getElementById("tooltip").hidden = true; }

function legend(container, names) {
  const box = el("div", { class: "legend" });
  names.forEach((name, i) => {
    const swatch = el("i");
    swatch.style.background = color(i);
    box.append(el("span", {}, swatch, name));
  });
  container.append(box);
}

function axes(chart, frame, xs, top, format) {
  const { left, bottom, width, height } = frame;
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#dde1e7" }));
  for (let i = 0; i <= 4; i++) {
    const y = height - bottom - (i / 4) * (height - bottom - 10);
    chart.append(svg("line", { x1: left, y1: y, x2: width, y2: y, stroke: "#f0f2f5" }));
    const label = svg("text", { x: left - 4, y: y + 4, "text-anchor": "end" });
    label.textContent = format((top * i) / 4);
    chart.append(label);
  }
  const step = Math.max(1, Math.ceil(xs.length / 8));
  xs.forEach((x, i) => {
    if (i % step) return;
    const label = svg("text", { x: frame.x(i), y: height - bottom + 14, "text-anchor": "middle" });
    label.textContent = when(x).slice(5, 16);
    chart.append(label);
  });
}

function frameFor(count, options) {
  // the first and last points sit inset, so bars and labels stay inside the frame
  const frame = { width: 900, height: options.height || 220, left: 64, bottom: 22, inset: 36 };
  const span = frame.width - frame.left - 2 * frame.inset;
  frame.x = (i) => frame.left + frame.inset + (count <= 1 ? span / 2 : (i * span) / (count - 1));
  frame.y = (value, top) => frame.height - frame.bottom - (top > 0 ? (value / top) * (frame.height - frame.bottom - 10) : 0);
  return frame;
}

// series: [{name, values: [number|null]}]; xs: ISO strings; markers: [{index, text}]
function lineChart(container, xs, series, options = {}) {
  container.replaceChildren();
  const format = options.format || ((v) => v.toFixed(2));
  const present = series.filter((s) => s.values.some((v) => v !== null && v !== undefined));
  if (!xs.length || !present.length) {
    container.append(el("div", { class: "empty" }, "no data yet"));
    return;
  }
  const frame = frameFor(xs.length, options);
  const chart = svg("svg", { viewBox: `0 0 ${frame.width} ${frame.height}`, role: "img" });
  let top = options.max || 0;
  for (const s of present) for (const v of s.values) if (v !== null && v > top) top = v;
  if (top <= 0) top = 1;
  axes(chart, frame, xs, top, format);
  for (const marker of options.markers || []) {
    const line = svg("line", { class: "alarm", x1: frame.x(marker.index), x2: frame.x(marker.index), y1: 10, y2: frame.height - frame.bottom });
    line.addEventListener("mousemove", (event) => tooltip(event, marker.text));
    line.addEventListener("mouseleave", hideTooltip);
    chart.append(line);
  }
  series.forEach((s, index) => {
    let path = "";
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      path += (path ? " L" : "M") + frame.x(i).toFixed(1) + "," + frame.y(v, top).toFixed(1);
    });
    if (path) chart.append(svg("path", { d: path, fill: "none", stroke: color(index), "stroke-width": 2, class: "series" }));
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const dot = svg("circle", { class: "point", cx: frame.x(i), cy: frame.y(v, top), r: 3.5, fill: color(index) });
      dot.addEventListener("mousemove", (event) => tooltip(event, `${s.name}  ${when(xs[i])}\n${format(v)}`));
      dot.addEventListener("mouseleave", hideTooltip);
      if (options.onPoint) dot.addEventListener("click", () => options.onPoint(i, s));
      chart.append(dot);
    });
  });
  container.append(chart);
  legend(container, series.map((s) => s.name));
}

// stacked bars: one bar per x, one segment per series
function stackedBars(container, xs, series, options = {}) {
  container.replaceChildren();
  if (!xs.length || !series.length) {
    container.append(el("div", { class: "empty" }, "no data yet"));
    return;
  }
  const format = options.format || ((v) => v.toFixed(0));
  const frame = frameFor(xs.length, options);
  const chart = svg("svg", { viewBox: `0 0 ${frame.width} ${frame.height}`, role: "img" });
  let top = options.max || 0;
  if (!top) xs.forEach((_, i) => { top = Math.max(top, series.reduce((sum, s) => sum + (s.values[i] || 0), 0)); });
  if (top <= 0) top = 1;
  axes(chart, frame, xs, top, format);
  const span = frame.width - frame.left - 2 * frame.inset;
  const barWidth = Math.max(2, Math.min(40, (span / xs.length) * 0.7));
  xs.forEach((x, i) => {
    let base = 0;
    series.forEach((s, index) => {
      const v = s.values[i] || 0;
      if (v <= 0) return;
      const y0 = frame.y(base, top), y1 = frame.y(base + v, top);
      const rect = svg("rect", { class: "point", x: frame.x(i) - barWidth / 2, y: y1, width: barWidth, height: Math.max(0.5, y0 - y1), fill: color(index) });
      rect.addEventListener("mousemove", (event) => tooltip(event, `${s.name}  ${when(x)}\n${format(v)}`));
      rect.addEventListener("mouseleave", hideTooltip);
      if (options.onPoint) rect.addEventListener("click", () => options.onPoint(i, s));
      chart.append(rect);
      base += v;
    });
  });
  container.append(chart);
  legend(container, series.map((s) => s.name));
}

// horizontal bars: [{name, value, text}]
function barList(container, items, options = {}) {
  container.replaceChildren();
  if (!items.length) {
    container.append(el("div", { class: "empty" }, "no data yet"));
    return;
  }
  const width = 900, row = 24, left = 160;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${items.length * row + 8}`, role: "img" });
  const top = options.max || Math.max(...items.map((item) => item.value), 1e-12);
  items.forEach((item, i) => {
    const name = svg("text", { x: left - 6, y: i * row + 17, "text-anchor": "end" });
    name.textContent = item.name;
    chart.append(name);
    const w = Math.max(1, ((width - left - 120) * item.value) / top);
    const fill = color(item.color ?? i);
    chart.append(svg("rect", { class: "point", x: left, y: i * row + 6, width: w, height: 14, fill }));
    const label = svg("text", { x: left + w + 6, y: i * row + 17 });
    label.textContent = item.text;
    chart.append(label);
  });
  container.append(chart);
}

// ------------------------------------------------------------------ navigation

function parseHash() {
  const [view, query] = location.hash.replace(/^#/, "").split("?");
  return { view: view || "overview", params: new URLSearchParams(query || "") };
}

function openDecisions(filters) {
  document.body.dataset.ready = "";  // until the filtered log has drawn
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  location.hash = "decisions?" + params.toString();
}

function windowFilter(start, route) {
  const end = new Date(Date.parse(start) + windowSeconds * 1000).toISOString().slice(0, 19);
  return { since: start.slice(0, 19), until: end, route: route || "" };
}

async function show() {
  const { view, params } = parseHash();
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + view;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === view);
  showError("");
  document.body.dataset.ready = "";
  try {
    if (view === "decisions") await loadDecisions(params);
    else if (!loaded[view]) {
      await VIEWS[view]();
      loaded[view] = true;
    }
    document.body.dataset.ready = view;
  } catch (error) {
    showError(error.message);
    document.body.dataset.ready = view + ":error";
  }
}

// ------------------------------------------------------------------ views

const TOTALS = [
  ["requests", "requests", count],
  ["calls", "calls", count],
  ["cost", "spend", usd],
  ["baseline_cost", "always the strongest", usd],
  ["savings", "saved", usd],
  ["savings_pct", "saved %", (v) => (v === null || v === undefined ? "n/a" : v.toFixed(1) + "%")],
  ["escalation_rate", "requests escalated", pct],
  ["errors", "failed calls", count],
  ["latency_p50_ms", "p50 latency ms (±0.1 %)", ms],
  ["latency_p95_ms", "p95 latency ms (±0.1 %)", ms],
];

async function overview() {
  const [summary, timeline] = await Promise.all([api("summary"), api("timeline")]);
  document.getElementById("ledger").textContent = `${summary.ledger} · as of ${when(summary.as_of)}`;
  const report = summary.report;
  const cards = document.getElementById("totals");
  cards.replaceChildren();
  const card = (key, label, value, text) =>
    cards.append(el("div", { class: "card", "data-key": key, "data-value": JSON.stringify(value ?? null) },
      el("div", { class: "label" }, label), el("div", { class: "value" }, text)));
  for (const [key, label, format] of TOTALS) card(key, label, report[key], format(report[key]));
  card("overhead_cost", "judge + LLM router", summary.overhead_cost, usd(summary.overhead_cost));
  if (summary.labelling_cost !== null) card("labelling_cost", "labelling (apart)", summary.labelling_cost, usd(summary.labelling_cost));
  renderTimeline(timeline);
}

function monitorWindows(timeline) {
  return timeline.monitor.windows.filter((w) => w.segment === null);
}

function renderTimeline(timeline) {
  const windows = monitorWindows(timeline);
  const xs = windows.map((w) => w.start);
  const seconds = timeline.monitor.window;
  if (typeof seconds === "string") {
    const match = /^P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?$/.exec(seconds);
    if (match) windowSeconds = (+match[1] || 0) * 86400 + (+match[2] || 0) * 3600 + (+match[3] || 0) * 60 + (+match[4] || 0);
  } else if (typeof seconds === "number") windowSeconds = seconds;
  const link = (i) => openDecisions(windowFilter(xs[i]));
  lineChart(document.getElementById("chart-spend"), xs, [
    { name: "spend", values: windows.map((w) => w.cost) },
    { name: "saved", values: windows.map((w) => w.savings) },
  ], { format: usd, onPoint: link });
  let spent = 0, saved = 0;
  const cumulative = windows.map((w) => { spent += w.cost || 0; saved += w.savings || 0; return [spent, spent + saved]; });
  lineChart(document.getElementById("chart-cumulative"), xs, [
    { name: "spend", values: cumulative.map((c) => c[0]) },
    { name: "always the strongest (spend + saved)", values: cumulative.map((c) => c[1]) },
  ], { format: usd, onPoint: link });
}

async function routing() {
  const timeline = await api("timeline");
  const windows = monitorWindows(timeline);
  const xs = windows.map((w) => w.start);
  const routes = [...new Set(windows.flatMap((w) => Object.keys(w.route_shares)))].sort();
  stackedBars(document.getElementById("chart-routes"), xs,
    routes.map((route) => ({ name: route, values: windows.map((w) => w.route_shares[route] || 0) })),
    { max: 1, format: pct, onPoint: (i, s) => openDecisions(windowFilter(xs[i], s.name)) });
  const mix = timeline.model_mix;
  const models = [...new Set(mix.flatMap((p) => Object.keys(p.calls)))].sort();
  stackedBars(document.getElementById("chart-models"), mix.map((p) => p.start),
    models.map((model) => ({ name: model, values: mix.map((p) => p.calls[model] || 0) })),
    { onPoint: (i) => openDecisions(windowFilter(mix[i].start)) });
  const index = new Map(xs.map((x, i) => [x, i]));
  const alarms = timeline.monitor.alarms;
  const markers = alarms.filter((a) => a.segment === null && index.has(a.start))
    .map((a) => ({ index: index.get(a.start), text: `${a.kind}: ${a.message}` }));
  lineChart(document.getElementById("chart-rates"), xs, [
    { name: "escalated", values: windows.map((w) => w.escalation_rate) },
    { name: "out of distribution", values: windows.map((w) => w.out_of_distribution_rate) },
    { name: "low confidence", values: windows.map((w) => w.low_confidence_rate) },
    { name: "failed", values: windows.map((w) => w.error_rate) },
  ], { format: pct, markers, onPoint: (i, s) => {
    const reason = { "out of distribution": "out_of_distribution", "low confidence": "low_confidence" }[s.name];
    openDecisions({ ...windowFilter(xs[i]), reason });
  } });
  table(document.getElementById("alarms"), [
    { title: "alarm", value: (a) => a.kind },
    { title: "window", value: (a) => when(a.start) },
    { title: "segment", value: (a) => a.segment ?? "" },
    { title: "message", value: (a) => a.message },
  ], alarms);
  table(document.getElementById("dial-changes"), [
    { title: "at", value: (c) => when(c.at) },
    { title: "threshold", num: true, value: (c) => `${c.previous.toFixed(3)} → ${c.threshold.toFixed(3)}` },
    { title: "target", value: (c) => c.target },
    { title: "reason", value: (c) => c.reason },
  ], timeline.monitor.dial_changes || []);
}

async function latency() {
  const data = await api("latency");
  const rows = data.latency;
  const within = (100 * data.latency_relative_error).toFixed(1);
  document.getElementById("latency-note").textContent = "Percentiles come from a histogram of "
    + `log-spaced bins per route (each bin keeps its lowest and highest latency): each is within ${within} % of the exact one.`;
  const named = rows.filter((r) => r.route !== null || rows.length === 1);
  const perRoute = rows.slice(0, -1);
  barList(document.getElementById("chart-latency"),
    perRoute.flatMap((r) => [["p50", r.p50_ms], ["p95", r.p95_ms], ["p99", r.p99_ms]]
      .map(([name, v], color) => ({ name: `${r.route ?? "-"} ${name}`, value: v || 0, text: ms(v) + " ms", color }))));
  table(document.getElementById("latency-table"), [
    { title: "route", value: (r) => (r === rows[rows.length - 1] ? "all routes" : r.route ?? "-") },
    { title: "calls", num: true, value: (r) => count(r.calls) },
    { title: "p50 ms", num: true, value: (r) => ms(r.p50_ms) },
    { title: "p95 ms", num: true, value: (r) => ms(r.p95_ms) },
    { title: "p99 ms", num: true, value: (r) => ms(r.p99_ms) },
  ], named.length ? rows : []);
  table(document.getElementById("errors-table"), [
    { title: "route", value: (r) => r.route ?? "-" },
    { title: "calls", num: true, value: (r) => count(r.calls) },
    { title: "failed", num: true, value: (r) => count(r.errors) },
    { title: "error rate", num: true, value: (r) => pct(r.error_rate) },
    { title: "failed over (answered)", num: true, value: (r) => count(r.failed_over) },
    { title: "unanswered", num: true, value: (r) => count(r.unanswered) },
  ], data.errors, (r) => openDecisions({ route: r.route }));
}

function keyOptions(select, keys, chosen) {
  select.replaceChildren(...keys.map((key) => el("option", { value: key }, key)));
  select.value = chosen;
}

async function segments() {
  const select = document.getElementById("segment-key");
  const data = await api("segments" + (select.value ? "?key=" + encodeURIComponent(select.value) : ""));
  keyOptions(select, data.keys, data.key);
  const top = Math.max(...data.segments.map((s) => s.cost || 0), 1e-12);
  table(document.getElementById("segments-table"), [
    { title: data.key, value: (s) => s.segment },
    { title: "requests", num: true, value: (s) => count(s.requests) },
    { title: "calls", num: true, value: (s) => count(s.calls) },
    { title: "failed", num: true, value: (s) => count(s.errors) },
    { title: "escalated calls", num: true, value: (s) => count(s.escalated_calls) },
    { title: "spend", num: true, value: (s) => usd(s.cost) },
    { title: "", value: (s) => { const bar = el("span", { class: "bar" }); bar.style.width = Math.round((100 * (s.cost || 0)) / top) + "px"; return bar; } },
    { title: "quality", num: true, value: (s) => (s.judged ? `${pct(s.quality)} of ${s.judged}` : "-") },
  ], data.segments, (s) => openDecisions({ key: data.key, segment: s.segment }));
  table(document.getElementById("budgets-table"), [
    { title: "key", value: (b) => b.key },
    { title: "period", value: (b) => b.period },
    { title: "spent", num: true, value: (b) => usd(b.spent) },
    { title: "budget", num: true, value: (b) => usd(b.budget) },
    { title: "burn", num: true, value: (b) => pct(b.burn) },
    { title: "", value: (b) => { const bar = el("span", { class: b.burn > 1 ? "bar over" : "bar" }); bar.style.width = Math.round(100 * Math.min(b.burn || 0, 1.5)) + "px"; return bar; } },
  ], data.budgets);
}

async function quality() {
  const [data, timeline] = await Promise.all([api("quality"), api("timeline")]);
  barList(document.getElementById("chart-quality"),
    data.routes.map((r) => ({ name: r.route ?? "-", value: r.quality, text: `${pct(r.quality)} good of ${r.judged}` })), { max: 1 });
  table(document.getElementById("quality-table"), [
    { title: "route", value: (r) => r.route ?? "-" },
    { title: "judged", num: true, value: (r) => count(r.judged) },
    { title: "good", num: true, value: (r) => count(r.good) },
    { title: "quality", num: true, value: (r) => pct(r.quality) },
  ], data.routes, (r) => openDecisions({ route: r.route }));
  const windows = monitorWindows(timeline);
  const routes = [...new Set(windows.flatMap((w) => Object.keys(w.quality_by_route)))].sort();
  lineChart(document.getElementById("chart-quality-time"), windows.map((w) => w.start), [
    { name: "all", values: windows.map((w) => w.quality) },
    ...routes.map((route) => ({ name: route, values: windows.map((w) => w.quality_by_route[route] ?? null) })),
  ], { max: 1, format: pct });
}

async function loadDecisions(params) {
  const form = document.getElementById("filters");
  const keys = await api("segments");
  keyOptions(document.getElementById("filter-key"), keys.keys, params.get("key") || keys.key);
  for (const name of ["route", "reason", "segment", "since", "until"]) form.elements[name].value = params.get(name) || "";
  decisionsOffset = Number(params.get("offset") || 0);
  const query = new URLSearchParams(params);
  query.set("key", form.elements.key.value);
  const data = await api("decisions?" + query.toString());
  document.getElementById("decisions-count").textContent =
    `${count(data.total)} calls match; showing ${data.total ? data.offset + 1 : 0}-${data.offset + data.rows.length}, newest first`;
  table(document.getElementById("decisions-table"), [
    { title: "time", value: (r) => when(r.timestamp) },
    { title: "route", value: (r) => r.route ?? "-" },
    { title: "model", value: (r) => r.model ?? "-" },
    { title: "reason", value: (r) => r.reason ?? "" },
    { title: "confidence", num: true, value: (r) => (r.confidence == null ? "" : r.confidence.toFixed(2)) },
    { title: "stage", value: (r) => r.stage ?? "" },
    { title: "session", value: (r) => sessionCell(r.session) },
    { title: "cost", num: true, value: (r) => usd(r.cost) },
    { title: "segment", value: (r) => r.segment ?? "" },
    { title: "", value: (r) => [r.escalated ? "escalated" : "", r.failed ? "failed" : "", r.overhead ? "overhead" : ""].filter(Boolean).join(" ") },
  ], data.rows, showWhy);
  document.getElementById("prev").disabled = decisionsOffset <= 0;
  document.getElementById("next").disabled = data.offset + data.rows.length >= data.total;
  document.getElementById("why").hidden = true;
}

function sessionCell(session) {
  if (!session) return "";
  const key = String(session.key ?? "");
  const short = key.length > 14 ? key.slice(0, 13) + "…" : key;
  return el("span", { title: key }, `${short} ${session.action ?? ""} #${session.turn ?? ""}`);
}

function pageDecisions(step) {
  const { params } = parseHash();
  params.set("offset", String(Math.max(0, decisionsOffset + step)));
  location.hash = "decisions?" + params.toString();
}

async function showWhy(row) {
  const box = document.getElementById("why");
  box.hidden = false;
  box.replaceChildren(el("p", { class: "muted" }, "loading..."));
  try {
    const data = await api("why/" + encodeURIComponent(row.record_id));
    const record = data.record;
    const parts = [el("h2", {}, `Why ${record.route ?? "-"}?`)];
    const facts = [
      ["reason", record.reason], ["confidence", record.confidence], ["decided route", record.metadata.decided_route],
      ["stage", record.metadata.stage], ["nearest similarity", record.metadata.max_similarity],
      ["session", record.metadata.session ? JSON.stringify(record.metadata.session) : null],
      ["model", record.model], ["cost", usd(record.cost)], ["latency ms", ms(record.latency_ms)],
      ["error", record.error], ["request", record.run_id], ["record", record.record_id],
    ].filter(([, v]) => v !== null && v !== undefined && v !== "");
    const list = el("table", { class: "data" });
    table(list, [{ title: "", value: (f) => f[0] }, { title: "", value: (f) => String(f[1]) }], facts);
    parts.push(list);
    if (record.query) parts.push(el("h2", {}, "Query"), el("pre", {}, record.query));
    parts.push(el("h2", {}, "Nearest exemplars"));
    if (data.neighbours.items.length) {
      const near = el("table", { class: "data" });
      table(near, [
        { title: "similarity", num: true, value: (n) => (typeof n.similarity === "number" ? n.similarity.toFixed(3) : "") },
        { title: "route", value: (n) => n.route ?? "" },
        { title: "exemplar", value: (n) => n.text ?? "" },
      ], data.neighbours.items);
      parts.push(near);
    }
    if (data.neighbours.note) parts.push(el("p", { class: "muted" }, data.neighbours.note));
    if (data.shadow) parts.push(el("h2", {}, "Shadow decision"), el("pre", {}, JSON.stringify(data.shadow, null, 2)));
    if (data.request.length > 1) {
      parts.push(el("h2", {}, "Calls of this request"));
      const calls = el("table", { class: "data" });
      table(calls, [
        { title: "time", value: (r) => when(r.timestamp) },
        { title: "route", value: (r) => r.route ?? "-" },
        { title: "model", value: (r) => r.model ?? "-" },
        { title: "cost", num: true, value: (r) => usd(r.cost) },
        { title: "", value: (r) => [r.escalated ? "escalated" : "", r.failed ? "failed" : "", r.overhead ? "overhead" : ""].filter(Boolean).join(" ") },
      ], data.request);
      parts.push(calls);
    }
    box.replaceChildren(...parts);
  } catch (error) {
    box.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

async function exemplars() {
  const data = await api("exemplars");
  const note = document.getElementById("exemplars-note");
  if (!data.router) {
    note.textContent = "No router given: start the dashboard with --router to list its exemplars.";
    return;
  }
  note.textContent = `${count(data.total)} exemplars in the router.`;
  table(document.getElementById("exemplar-counts"), [
    { title: "route", value: (r) => r[0] }, { title: "exemplars", num: true, value: (r) => count(r[1]) },
  ], Object.entries(data.counts));
  const box = document.getElementById("exemplar-sources");
  box.replaceChildren();
  const sources = Object.entries(data.sources);
  if (!sources.length) box.append(el("p", { class: "muted" }, "No learned exemplars yet."));
  for (const [source, items] of sources) {
    box.append(el("h2", {}, `Learned from ${source} (${items.length})`));
    const list = el("table", { class: "data" });
    table(list, [
      { title: "text", value: (e) => e.text },
      { title: "route", value: (e) => e.route ?? "" },
      { title: "learned", value: (e) => when(e.provenance.learned_at) },
      { title: "confirmations", num: true, value: (e) => e.provenance.confirmations ?? "" },
      { title: "outcomes", value: (e) => JSON.stringify(e.provenance.outcomes ?? {}) },
      { title: "scorer", value: (e) => e.provenance.scorer ?? "" },
    ], items);
    box.append(list);
  }
}

const VIEWS = { overview, routing, latency, segments, quality, exemplars };

// ------------------------------------------------------------------ wiring

document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  openDecisions(Object.fromEntries([...data.entries()].filter(([, v]) => v)));
});
document.getElementById("filters-clear").addEventListener("click", () => { location.hash = "decisions"; });
document.getElementById("prev").addEventListener("click", () => pageDecisions(-50));
document.getElementById("next").addEventListener("click", () => pageDecisions(50));
document.getElementById("segment-key").addEventListener("change", () => { segments().catch((e) => showError(e.message)); });
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("langroute-dashboard-key", document.getElementById("login-key").value);
  document.getElementById("login").hidden = true;
  for (const name of Object.keys(loaded)) delete loaded[name];
  show();
});
window.addEventListener("hashchange", show);
show();
