"use strict";
// History: timeline of each track's dominant emotion, share of each emotion per bucket, exports.
let plot = null;
const MAX_EVENTS = 20000;

function query() {
  const q = new URLSearchParams();
  for (const id of ["since", "until"]) {
    const v = document.getElementById(id).value;
    if (v) q.set(id, String(new Date(v).getTime() / 1000));
  }
  for (const id of ["source", "modality"]) { const v = document.getElementById(id).value; if (v) q.set(id, v); }
  return q;
}

async function allEvents(q) {
  const out = []; let cursor = 0;
  while (out.length < MAX_EVENTS) {
    q.set("cursor", cursor); q.set("limit", "5000");
    const page = await api(`/api/events?${q}`);
    out.push(...page.events);
    if (page.next === null) break;
    cursor = page.next;
  }
  return out;
}

function timeline(events) {
  const canvas = document.getElementById("timeline");
  const tracks = [...new Set(events.map((e) => `${e.modality} ${e.source}/${e.track}`))];
  canvas.width = canvas.clientWidth; canvas.height = Math.max(60, 18 * tracks.length + 24);
  const g = canvas.getContext("2d"); g.clearRect(0, 0, canvas.width, canvas.height);
  if (!events.length) { canvas.dataset.segments = "0"; return; }
  const t = events.map((e) => Date.parse(e.ts)), t0 = Math.min(...t), t1 = Math.max(...t) + 1000;
  const x = (v) => 120 + (canvas.width - 130) * (v - t0) / (t1 - t0);
  const last = new Map(); let segments = 0;
  g.font = "11px sans-serif";
  tracks.forEach((name, i) => { g.fillStyle = "#8a939e"; g.fillText(name, 4, 14 + 18 * i); });
  events.forEach((e, i) => {
    const name = `${e.modality} ${e.source}/${e.track}`, row = tracks.indexOf(name);
    const prev = last.get(name);
    if (prev) {
      g.fillStyle = COLORS[prev.emotion];
      g.fillRect(x(prev.t), 4 + 18 * row, Math.max(1, x(t[i]) - x(prev.t)), 14); segments++;
    }
    last.set(name, e.type === "end" ? null : {t: t[i], emotion: e.emotion});
  });
  canvas.dataset.segments = String(segments);
  g.fillStyle = "#8a939e"; g.fillText(new Date(t0).toLocaleString(), 120, canvas.height - 4);
}

function chart(stats) {
  const box = document.getElementById("chart"); box.innerHTML = "";
  box.dataset.points = String(stats.t.length);
  if (!stats.t.length) { box.append(el("p", {class: "dim"}, "No events in this selection.")); return; }
  const series = [{}].concat(LABELS.map((l) => ({label: l, stroke: COLORS[l], width: 2,
                                                    value: (u, v) => v == null ? "-" : `${Math.round(100 * v)} %`})));
  const data = [stats.t].concat(LABELS.map((l) => stats.share[l]));
  plot = new uPlot({width: Math.min(1000, box.clientWidth || 900), height: 280, series,
                    scales: {x: {time: true, auto: false, range: [stats.t[0] - stats.bucket_s, stats.t[stats.t.length - 1] + stats.bucket_s]},
                             y: {range: [0, 1]}}, axes: [{stroke: "#8a939e"}, {stroke: "#8a939e"}]}, data, box);
}

async function show(ev) {
  if (ev) ev.preventDefault();
  const q = query();
  document.getElementById("csv").href = `/api/events.csv?${q}`;
  document.getElementById("json").href = `/api/events.json?${q}`;
  const bucket = document.getElementById("bucket").value;
  const stats = await api(`/api/stats?${q}&bucket=${bucket}`);
  chart(stats);
  const events = await allEvents(new URLSearchParams(q));
  document.getElementById("count").textContent = `(${events.length} events)`;
  timeline(events);
}

me().then(() => { document.getElementById("filters").addEventListener("submit", show); show(); });
