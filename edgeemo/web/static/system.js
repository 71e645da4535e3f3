"use strict";
// System: health badges, charts of the last hour (the daemon samples its metrics every few seconds into
// a ring), then the details. Refreshed every 5 s; a section without data is left out.
const fmt = (v, unit = "") => v == null ? "–" : `${typeof v === "number" ? +v.toFixed(2) : v}${unit}`;
const PALETTE = ["#4fa3ff", "#30a46c", "#f5a524", "#e5484d", "#8e4ec6", "#12a594", "#d6409f"];
const plots = new Map();

function badge(text, state, title = "") { return el("span", {class: `badge ${state}`, title}, text); }

function badges(s) {
  const out = [];
  for (const src of s.sources || []) {
    out.push(badge(`${src.name}: ${src.up ? `up · ${fmt(src.fps)} frames/s` : "down"}`, src.up ? "ok" : "bad",
                   src.last_frame_age_s == null ? "no frame yet" : `last frame ${src.last_frame_age_s} s ago`));
  }
  if (!s.mqtt.enabled) out.push(badge("MQTT off", ""));
  else out.push(badge(`MQTT ${s.mqtt.connected ? "connected" : "disconnected"}`, s.mqtt.connected ? "ok" : "bad"));
  if (s.journal && s.journal.writable === false) {
    out.push(badge(`journal: disk not writable · ${fmt(s.journal.held_in_memory)} held in memory`, "bad",
                   `full, read-only or failing; ${fmt(s.journal.dropped_storage)} dropped (journal.memory_bound reached)`));
  } else if (s.journal && s.journal.undelivered != null) {
    const n = s.journal.undelivered;
    out.push(badge(`journal backlog ${fmt(n)}`, n > 1000 ? "warn" : "ok", "events not yet delivered to MQTT"));
  }
  out.push(badge(`CPU ${fmt(s.cpu_cores)} of ${s.cpu_count} cores`, s.cpu_cores > 0.8 * s.cpu_count ? "warn" : "ok"));
  document.getElementById("badges").replaceChildren(...out);
}

// One uPlot per chart, made once and fed new data on each refresh.
function chart(id, title, unit, t, series) {
  const shown = series.filter(([, v]) => v.some((x) => x != null));
  const box = document.getElementById("charts");
  let entry = plots.get(id);
  if (!shown.length || t.length === 0) { if (entry) { entry.panel.remove(); plots.delete(id); } return; }
  const names = shown.map(([n]) => n).join("|");
  if (entry && entry.names !== names) { entry.panel.remove(); plots.delete(id); entry = null; }
  if (!entry) {
    const holder = el("div", {class: "chart", id: `chart-${id}`});
    const panel = el("section", {class: "panel"}, el("h3", {}, title, " ", el("span", {class: "dim"}, unit)), holder);
    box.append(panel);
    const opts = {width: holder.clientWidth || 400, height: 170, legend: {show: shown.length > 1},
                  series: [{}].concat(shown.map(([name], i) => ({label: name, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true}))),
                  scales: {x: {time: true, range: () => { const now = Date.now() / 1000; return [now - 3600, now]; }},  // the last hour
                           y: {range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.15]}},
                  axes: [{stroke: "#8a939e", grid: {stroke: "#2a3038"}}, {stroke: "#8a939e", grid: {stroke: "#2a3038"}, size: 50}]};
    entry = {panel, holder, names, plot: new uPlot(opts, [t, ...shown.map(([, v]) => v)], holder)};
    plots.set(id, entry);
  } else entry.plot.setData([t, ...shown.map(([, v]) => v)]);
  entry.holder.dataset.points = String(t.length);
}

function charts(s) {
  const h = s.history;
  if (!h) return;
  chart("fps", "Frames analysed per second", "per source", h.t, Object.entries(h.fps));
  chart("cpu", "CPU", "cores (this process)", h.t, [["cpu", h.cpu]]);
  chart("stages", "Stage latency", "ms, mean per sample", h.t, Object.entries(h.stages_ms));
  chart("backlog", "Journal backlog", "events not yet delivered", h.t, [["backlog", h.backlog]]);
  chart("lag", "Delivery lag", "ms, journal to broker", h.t, [["lag", h.lag_ms]]);
}

function table(title, rows) {
  const t = el("table"); for (const [k, v] of rows) t.append(el("tr", {}, el("th", {}, k), el("td", {}, String(v))));
  return el("section", {class: "panel"}, el("h3", {}, title), el("div", {class: "scroll"}, t));
}

function details(s) {
  const out = [];
  for (const src of s.sources || []) {
    out.push(table(`Source ${src.name}`, [["url", src.url], ["frames/s", fmt(src.fps)], ["frames", fmt(src.frames)],
      ["dropped", fmt(src.dropped)], ["reconnects", fmt(src.reconnects)], ["faces now", fmt(src.tracks)],
      ["last frame", fmt(src.last_frame_age_s, " s ago")]]));
  }
  if (s.stages_ms && Object.values(s.stages_ms).some((v) => v != null)) {
    out.push(table("Stage latency (mean since start)", Object.entries(s.stages_ms).filter(([, v]) => v != null).map(([k, v]) => [k, fmt(v, " ms")])));
  }
  if (s.queues && Object.keys(s.queues).length) out.push(table("Queues", Object.entries(s.queues)));
  out.push(table("Daemon", [["version", s.version], ["device", s.device], ["CPU", `${fmt(s.cpu_cores)} cores of ${s.cpu_count}`],
                            ["dashboard clients", s.live_clients], ...Object.entries(s.mqtt).map(([k, v]) => [`MQTT ${k.replace("_", " ")}`, fmt(v)])]));
  out.push(table("Models", Object.entries(s.models)));
  document.getElementById("system").replaceChildren(...out);
}

async function refresh() {
  const s = await api("/api/system");
  document.getElementById("about").textContent = `· ${s.device} · edgeemo ${s.version}`;
  badges(s); charts(s); details(s);
}

me().then(() => {
  refresh(); setInterval(refresh, 5000);
  window.addEventListener("resize", () => { for (const e of plots.values()) e.plot.setSize({width: e.holder.clientWidth, height: 170}); });
});
