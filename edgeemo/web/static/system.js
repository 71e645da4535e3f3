"use strict";
// System: frames/s, stage latencies, CPU, queues, MQTT and sources, model versions (every 2 s).
const fmt = (v, unit = "") => v == null ? "–" : `${typeof v === "number" ? +v.toFixed(2) : v}${unit}`;
function table(title, rows) {
  const t = el("table"); for (const [k, v] of rows) t.append(el("tr", {}, el("th", {}, k), el("td", {}, String(v))));
  return [el("h3", {}, title), t];
}
async function refresh() {
  const s = await api("/api/system"); const box = document.getElementById("system"); box.innerHTML = "";
  box.append(...table("Daemon", [["version", s.version], ["device", s.device],
                                 ["CPU", `${fmt(s.cpu_cores)} cores of ${s.cpu_count}`], ["dashboard clients", s.live_clients]]));
  for (const src of s.sources || []) {
    box.append(...table(`Source ${src.name}`, [["url", src.url], ["frames/s", fmt(src.fps)], ["frames", fmt(src.frames)],
      ["dropped", fmt(src.dropped)], ["reconnects", fmt(src.reconnects)], ["faces now", fmt(src.tracks)],
      ["last frame", fmt(src.last_frame_age_s, " s ago")]]));
  }
  if (s.stages_ms) box.append(...table("Stage latency (mean)", Object.entries(s.stages_ms).map(([k, v]) => [k, fmt(v, " ms")])));
  if (s.queues) box.append(...table("Queues", Object.entries(s.queues)));
  box.append(...table("MQTT", Object.entries(s.mqtt)));
  box.append(...table("Models", Object.entries(s.models)));
}
me().then(() => { refresh(); setInterval(refresh, 2000); });
