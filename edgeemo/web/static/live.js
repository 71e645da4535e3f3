"use strict";
// Live: one card per face in view (from the SSE `state` readings and face events) and one per voice /
// fused reading; a voice or fused card fades after its `end` event and says how long ago it ended.
const cards = new Map();

function card(key, title, source, parent) {
  let c = cards.get(key);
  if (!c) { c = readingCard(key, title, source); parent.appendChild(c.box); cards.set(key, c); }
  return c;
}

function drop(key) { const c = cards.get(key); if (c) { c.box.remove(); cards.delete(key); } }

function ago(seconds) {
  return seconds < 90 ? `${Math.round(seconds)} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
}

function tick() {  // once a second: how long ago each ended reading ended
  for (const c of cards.values()) {
    if (c.endedAt) c.status.textContent = `ended ${ago(Math.max(0, (Date.now() - c.endedAt) / 1000))} ago`;
  }
}

function emptyStates() {
  const where = ME.sources.length > 1 ? `sources ${ME.sources.join(", ")}` : `source ${ME.sources[0]}`;
  const nobody = document.getElementById("nobody"), silent = document.getElementById("silent");
  nobody.replaceChildren(el("b", {}, `No face in view on ${where}.`), el("br"),
                         "A card appears here for each face the camera sees, with its seven emotions.");
  silent.replaceChildren(el("b", {}, `Nobody has spoken on ${where} yet.`), el("br"),
                         "Voice and fused (face + voice) readings appear while someone speaks.");
}

function shown() {
  document.getElementById("nobody").hidden = [...cards.keys()].some((k) => k.startsWith("face/"));
  document.getElementById("silent").hidden = [...cards.keys()].some((k) => !k.startsWith("face/"));
}

function onState(state) {
  const seen = new Set();
  for (const f of state.faces) {
    const key = `face/${f.source}/${f.track}`; seen.add(key);
    showReading(card(key, `Face ${f.track}`, f.source, document.getElementById("faces")), f);
  }
  for (const key of [...cards.keys()]) if (key.startsWith("face/") && !seen.has(key)) drop(key);
  shown();
}

function onEvent(e) {
  if (e.modality === "face") {
    const key = `face/${e.source}/${e.track}`;
    if (e.type === "end") drop(key);
    else showReading(card(key, `Face ${e.track}`, e.source, document.getElementById("faces")), e);
  } else {
    const c = card(`${e.modality}/${e.source}`, e.modality === "voice" ? "Voice" : "Fused (face + voice)", e.source,
                   document.getElementById("voice"));
    showReading(c, e);
    c.endedAt = e.type === "end" ? Date.parse(e.ts) : null;
    c.box.classList.toggle("ended", e.type === "end");
    c.status.textContent = e.type === "end" ? "" : "speaking now";
    tick();
  }
  shown();
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
  emptyStates();
  document.getElementById("legend").append(legend());
  if (ME.preview) preview();
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/live");
  source.onopen = () => { conn.textContent = "· live"; };
  source.onerror = () => { conn.textContent = "· reconnecting…"; };
  source.addEventListener("state", (m) => onState(JSON.parse(m.data)));
  source.addEventListener("event", (m) => onEvent(JSON.parse(m.data)));
  fetch("/api/state").then((r) => r.json()).then((s) => { onState(s); for (const v of s.voice) onEvent(v); });
  setInterval(tick, 1000);
});
