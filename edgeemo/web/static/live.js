"use strict";
// Live: one card per face track (from the SSE `state` readings and face events), voice/fused readings.
window.__shown = [];  // {seq, ts, at}: the frame an event's bars were drawn in (tools/bench/dashboard.py reads it)
const cards = new Map();

function card(key, title, parent) {
  let c = cards.get(key);
  if (c) return c;
  const bars = {};
  const box = el("div", {class: "card", "data-key": key});
  const dom = el("div", {class: "dom"});
  box.append(el("h3", {}, title), dom);
  for (const label of LABELS) {
    const fill = el("div", {class: "fill", "data-emotion": label}); fill.style.background = COLORS[label];
    const pct = el("span", {class: "dim"});
    box.append(el("div", {class: "bar"}, el("span", {}, label), el("div", {class: "track"}, fill), pct));
    bars[label] = [fill, pct];
  }
  parent.appendChild(box);
  c = {box, dom, bars}; cards.set(key, c);
  return c;
}

function draw(c, reading) {
  c.dom.textContent = `${reading.emotion} ${Math.round(100 * reading.confidence)} %`;
  c.dom.style.color = COLORS[reading.emotion];
  for (const label of LABELS) {
    const p = reading.probs[label] || 0, [fill, pct] = c.bars[label];
    fill.style.width = `${(100 * p).toFixed(1)}%`; pct.textContent = `${Math.round(100 * p)}%`;
  }
}

function drop(key) { const c = cards.get(key); if (c) { c.box.remove(); cards.delete(key); } }

function nobody() {
  document.getElementById("nobody").hidden = [...cards.keys()].some((k) => k.startsWith("face/"));
  document.getElementById("silent").hidden = [...cards.keys()].some((k) => !k.startsWith("face/"));
}

function onState(state) {
  const seen = new Set();
  for (const f of state.faces) {
    const key = `face/${f.source}/${f.track}`; seen.add(key);
    draw(card(key, `Face ${f.track} · ${f.source}`, document.getElementById("faces")), f);
  }
  for (const key of [...cards.keys()]) if (key.startsWith("face/") && !seen.has(key)) drop(key);
  nobody();
}

function onEvent(e) {
  const key = e.modality === "face" ? `face/${e.source}/${e.track}` : `${e.modality}/${e.source}`;
  if (e.type === "end" && e.modality === "face") drop(key);
  else {
    const parent = document.getElementById(e.modality === "face" ? "faces" : "voice");
    draw(card(key, e.modality === "face" ? `Face ${e.track} · ${e.source}` : `${e.modality} · ${e.source}`, parent), e);
  }
  nobody();
  requestAnimationFrame(() => {  // the frame that shows the new bars
    window.__shown.push({seq: e.seq, ts: e.ts, at: Date.now()});
    if (window.__shown.length > 2000) window.__shown.splice(0, 1000);
  });
}

function preview() {
  // Only when the daemon runs with web.preview: true (no pixels leave it otherwise).
  const img = document.getElementById("preview");
  img.hidden = false;
  const next = () => { img.src = `/api/preview.jpg?t=${Date.now()}`; };
  img.onload = () => setTimeout(next, 500);
  img.onerror = () => setTimeout(next, 2000);
  next();
}

me().then(() => {
  if (ME.preview) preview();
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/live");
  source.onopen = () => { conn.textContent = "· live"; };
  source.onerror = () => { conn.textContent = "· reconnecting…"; };
  source.addEventListener("state", (m) => onState(JSON.parse(m.data)));
  source.addEventListener("event", (m) => onEvent(JSON.parse(m.data)));
  fetch("/api/state").then((r) => r.json()).then((s) => { onState(s); for (const v of s.voice) onEvent(v); });
});
