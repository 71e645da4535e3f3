"use strict";
// History: per source, the faces (tracks packed into as few rows as overlap allows), the voice and the
// fused readings on one row each, on a real time axis; zoomed out, each pixel shows the emotion that
// held longest in it. Below, the share of each emotion per bucket, and the exports.
let plot = null, lanes = [], full = null, view = null;
const MAX_EVENTS = 20000, LEFT = 92, ROW = 20, AXIS = 26;

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

// Segments [t0, t1, emotion] of each track (seconds), from one event to the next of the same track.
function tracksOf(events) {
  const tracks = new Map();
  for (const e of events) {
    const key = `${e.source}\u0000${e.modality}\u0000${e.track}`, t = Date.parse(e.ts) / 1000;
    let tr = tracks.get(key);
    if (!tr) { tr = {source: e.source, modality: e.modality, segs: [], open: null}; tracks.set(key, tr); }
    if (tr.open) tr.segs.push([tr.open.t, t, tr.open.emotion]);
    tr.open = e.type === "end" ? null : {t, emotion: e.emotion};
  }
  for (const tr of tracks.values()) {
    if (tr.open) tr.segs.push([tr.open.t, tr.open.t + 1, tr.open.emotion]);  // still going: a second's mark
    tr.start = tr.segs.length ? tr.segs[0][0] : 0; tr.end = tr.segs.length ? tr.segs[tr.segs.length - 1][1] : 0;
  }
  return [...tracks.values()].filter((tr) => tr.segs.length);
}

// Rows grouped per source: faces packed (a track takes the first row free when it starts), voice, fused.
function lanesOf(tracks) {
  const out = [];
  for (const source of [...new Set(tracks.map((t) => t.source))].sort()) {
    const faces = tracks.filter((t) => t.source === source && t.modality === "face").sort((a, b) => a.start - b.start);
    const rows = [];
    for (const tr of faces) {
      let row = rows.find((r) => r.end <= tr.start);
      if (!row) { row = {end: 0, segs: []}; rows.push(row); }
      row.segs.push(...tr.segs); row.end = tr.end;
    }
    rows.forEach((r, i) => out.push({source, name: rows.length > 1 ? `faces ${i + 1}` : "faces", segs: r.segs}));
    for (const modality of ["voice", "fused"]) {
      const segs = tracks.filter((t) => t.source === source && t.modality === modality).flatMap((t) => t.segs);
      if (segs.length) out.push({source, name: modality, segs});
    }
  }
  return out;
}

function draw(selection = null) {
  const canvas = document.getElementById("timeline"), width = canvas.clientWidth || 800;
  const sources = [...new Set(lanes.map((l) => l.source))];
  canvas.width = width; canvas.height = Math.max(60, ROW * lanes.length + 16 * sources.length + AXIS);
  const g = canvas.getContext("2d"); g.clearRect(0, 0, canvas.width, canvas.height);
  g.font = "12px system-ui, sans-serif";
  if (!lanes.length) { canvas.dataset.segments = "0"; g.fillStyle = "#8a939e"; g.fillText("No events in this selection.", 10, 30); return; }
  const [v0, v1] = view, plotW = width - LEFT - 6, perPx = (v1 - v0) / plotW, x = (t) => LEFT + (t - v0) / perPx;
  let y = 0, segments = 0, last = null;
  for (const lane of lanes) {
    if (lane.source !== last) {  // a source's header
      g.fillStyle = "#e6e8eb"; g.font = "600 12px system-ui, sans-serif"; g.fillText(lane.source, 4, y + 12);
      g.font = "12px system-ui, sans-serif"; y += 16; last = lane.source;
    }
    g.fillStyle = "#8a939e"; g.fillText(lane.name, 14, y + 14);
    // The time of each emotion per pixel column; each column takes the one that held longest.
    const acc = new Float32Array(plotW * LABELS.length);
    for (const [a, b, emotion] of lane.segs) {
      if (b <= v0 || a >= v1) continue;
      segments++;
      const k = LABELS.indexOf(emotion), c0 = Math.max(0, Math.floor((a - v0) / perPx)), c1 = Math.min(plotW - 1, Math.floor((b - v0) / perPx));
      for (let c = c0; c <= c1; c++) {
        const lo = Math.max(a, v0 + c * perPx), hi = Math.min(b, v0 + (c + 1) * perPx);
        if (hi > lo) acc[c * LABELS.length + k] += hi - lo;
      }
    }
    let runStart = -1, runColor = null;
    for (let c = 0; c <= plotW; c++) {
      let best = -1, most = 0;
      if (c < plotW) for (let k = 0; k < LABELS.length; k++) if (acc[c * LABELS.length + k] > most) { most = acc[c * LABELS.length + k]; best = k; }
      const color = best < 0 ? null : COLORS[LABELS[best]];
      if (color !== runColor) {
        if (runColor) { g.fillStyle = runColor; g.fillRect(LEFT + runStart, y + 3, c - runStart, ROW - 6); }
        runStart = c; runColor = color;
      }
    }
    y += ROW;
  }
  // The time axis: ticks at round local times, gridlines through the rows.
  g.fillStyle = "#8a939e";
  for (const [t, label] of timeTicks(v0, v1, plotW)) {
    g.fillStyle = "#2a3038"; g.fillRect(x(t), 0, 1, y);
    g.fillStyle = "#8a939e"; g.fillText(label, Math.min(x(t) - 14, width - 60), y + 16);
  }
  if (selection) { g.fillStyle = "rgba(79,163,255,.25)"; g.fillRect(Math.min(...selection), 0, Math.abs(selection[1] - selection[0]), y); }
  canvas.dataset.segments = String(segments);
  canvas.dataset.lanes = String(lanes.length);
  canvas.dataset.view = `${v0},${v1}`;
  document.getElementById("scale").textContent = perPx > 1 ? `Each pixel here spans ${perPx < 90 ? `${Math.round(perPx)} s` : `${Math.round(perPx / 60)} min`}: it shows the emotion that held longest in it.` : "";
}

function zoomable(canvas) {
  let from = null;
  const at = (ev) => ev.clientX - canvas.getBoundingClientRect().left;
  const time = (px) => view[0] + (Math.max(LEFT, px) - LEFT) / (canvas.clientWidth - LEFT - 6) * (view[1] - view[0]);
  canvas.addEventListener("pointerdown", (ev) => { from = at(ev); canvas.setPointerCapture(ev.pointerId); });
  canvas.addEventListener("pointermove", (ev) => { if (from !== null) draw([from, at(ev)]); });
  canvas.addEventListener("pointerup", (ev) => {
    const to = at(ev);
    if (from !== null && Math.abs(to - from) > 5) {
      const [a, b] = [time(Math.min(from, to)), time(Math.max(from, to))];
      if (b - a >= 1) view = [a, b];
    }
    from = null; draw();
  });
  canvas.addEventListener("dblclick", () => { view = full; draw(); });
  document.getElementById("zoom-out").onclick = () => { view = full; draw(); };
}

function chart(stats) {
  const box = document.getElementById("chart"); box.innerHTML = ""; plot = null;
  box.dataset.points = String(stats.t.length);
  if (!stats.t.length) { box.append(el("p", {class: "dim"}, "No events in this selection.")); return; }
  const series = [{}].concat(LABELS.map((l) => ({label: l, stroke: COLORS[l], width: 2,
                                                    value: (u, v) => v == null ? "-" : `${Math.round(100 * v)} %`})));
  const data = [stats.t].concat(LABELS.map((l) => stats.share[l]));
  plot = new uPlot({width: box.clientWidth || 800, height: 260, series, legend: {show: box.clientWidth > 500},
                    scales: {x: {time: true, auto: false, range: [stats.t[0] - stats.bucket_s, stats.t[stats.t.length - 1] + stats.bucket_s]},
                             y: {range: [0, 1]}},
                    axes: [{stroke: "#8a939e", grid: {stroke: "#2a3038"}},
                           {stroke: "#8a939e", grid: {stroke: "#2a3038"}, values: (u, v) => v.map((x) => `${Math.round(100 * x)}%`)}]}, data, box);
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
  lanes = lanesOf(tracksOf(events));
  let lo = Infinity, hi = -Infinity;
  for (const l of lanes) for (const [a, b] of l.segs) { lo = Math.min(lo, a); hi = Math.max(hi, b); }
  full = lanes.length ? [lo, hi] : [0, 1];
  view = full;
  draw();
}

me().then(() => {
  document.getElementById("legend").append(legend());
  zoomable(document.getElementById("timeline"));
  document.getElementById("filters").addEventListener("submit", show);
  let resized = null;
  window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(() => {
    draw(); const box = document.getElementById("chart"); if (plot) plot.setSize({width: box.clientWidth, height: 260}); }, 150); });
  show();
});
