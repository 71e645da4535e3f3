"use strict";
// Analyse: a file goes to POST /api/analyze (the daemon reads it with `edgeemo detect`'s analysis and
// forgets it); the answer is drawn here: boxes and labels over the picture or the playing video, seven
// bars per face, and for a video or sound a timeline of each face's and the voice's readings.
let RESULT = null, MEDIA = null, OBJECT_URL = null;
const faceCards = [];

async function send(file) {
  await READY;  // the CSRF token
  const msg = document.getElementById("msg");
  msg.className = "dim"; msg.textContent = `Analysing ${file.name} (${(file.size / 1e6).toFixed(1)} MB)…`;
  const form = new FormData(); form.append("file", file);
  const r = await fetch("/api/analyze", {method: "POST", body: form, headers: {"X-CSRF-Token": ME.csrf}});
  if (r.status === 401) { location.href = "/login"; return; }
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) { msg.className = "err"; msg.textContent = data.error; return; }
  const faces = data.frames.reduce((n, f) => Math.max(n, f.faces.length), 0);
  msg.textContent = `${file.name}: ${data.kind}` + (data.kind === "video" ? `, ${data.frames.length} frames` : "")
    + (data.kind !== "sound" ? `, ${faces === 0 ? "no face found" : faces === 1 ? "one face" : data.kind === "image" ? `${faces} faces` : `up to ${faces} faces`}` : "")
    + (data.kind !== "image" ? `, ${data.segments.length} speech segment${data.segments.length === 1 ? "" : "s"}` : "") + ".";
  show(file, data);
}

function show(file, data) {
  RESULT = data;
  if (OBJECT_URL) URL.revokeObjectURL(OBJECT_URL);
  OBJECT_URL = URL.createObjectURL(file);
  const stage = document.getElementById("stage");
  const tag = {image: "img", video: "video", sound: "audio"}[data.kind];
  MEDIA = el(tag, {src: OBJECT_URL, id: "media"});
  if (tag !== "img") { MEDIA.controls = true; MEDIA.playsInline = true; }
  const overlay = el("canvas", {id: "overlay"});
  stage.replaceChildren(MEDIA, ...(tag === "audio" ? [] : [overlay]));
  document.getElementById("result").hidden = false;
  document.getElementById("faces-title").hidden = data.kind === "sound";
  const redraw = () => { const frame = frameAt(now()); drawBoxes(overlay, frame); showCards(frame); drawTimeline(); };
  MEDIA.addEventListener(tag === "img" ? "load" : "loadeddata", redraw);
  if (tag !== "img") {
    MEDIA.addEventListener("timeupdate", redraw);
    MEDIA.addEventListener("seeked", redraw);
    const onFrame = () => { redraw(); MEDIA.requestVideoFrameCallback(onFrame); };
    if (MEDIA.requestVideoFrameCallback) MEDIA.requestVideoFrameCallback(onFrame);
  }
  new ResizeObserver(redraw).observe(stage);
  document.getElementById("timeline-box").hidden = data.kind === "image";
  segmentsTable(data.segments);
  redraw();
}

function now() { return MEDIA && MEDIA.currentTime !== undefined ? MEDIA.currentTime : 0; }

function frameAt(t) {  // the last analysed frame at or before t (frames come sorted by pts)
  const frames = RESULT.frames; let lo = 0, hi = frames.length - 1, found = frames[0];
  while (lo <= hi) { const mid = (lo + hi) >> 1; if (frames[mid].pts <= t + 0.001) { found = frames[mid]; lo = mid + 1; } else hi = mid - 1; }
  return found || {pts: 0, faces: []};
}

function drawBoxes(canvas, frame) {
  const natural = MEDIA.naturalWidth || MEDIA.videoWidth;
  if (!natural || !canvas.getContext) return;
  canvas.width = MEDIA.clientWidth; canvas.height = MEDIA.clientHeight;
  const k = canvas.width / natural, g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.font = "600 13px system-ui, sans-serif"; g.lineWidth = 2.5;
  frame.faces.forEach((f, i) => {
    const [x, y, w, h] = f.box.map((v) => v * k), color = COLORS[f.emotion];
    const label = `${i + 1} · ${f.emotion} ${Math.round(100 * f.confidence)}%`, tw = g.measureText(label).width + 10;
    g.strokeStyle = color; g.strokeRect(x, y, w, h);
    const ly = y > 22 ? y - 20 : y + h;
    g.fillStyle = color; g.fillRect(x - 1.25, ly, tw, 20);
    g.fillStyle = "#fff"; g.fillText(label, x + 4, ly + 14);
  });
  canvas.dataset.boxes = String(frame.faces.length);
}

function showCards(frame) {
  const box = document.getElementById("faces");
  if (RESULT.kind === "sound") { box.replaceChildren(); return; }
  if (!frame.faces.length) { box.replaceChildren(el("div", {class: "empty"}, RESULT.kind === "image" ? "No face found in this picture." : "No face in this frame.")); faceCards.length = 0; return; }
  if (box.querySelector(".empty")) box.replaceChildren();
  frame.faces.forEach((f, i) => {
    if (!faceCards[i]) { faceCards[i] = readingCard(`face/${i + 1}`, `Face ${i + 1}`, ""); }
    if (faceCards[i].box.parentNode !== box) box.append(faceCards[i].box);
    showReading(faceCards[i], f);
    faceCards[i].status.textContent = RESULT.kind === "video" ? `at ${clock(frame.pts)}` : "";
  });
  for (let i = frame.faces.length; i < faceCards.length; i++) faceCards[i].box.remove();
}

function duration() {
  const last = RESULT.frames.length ? RESULT.frames[RESULT.frames.length - 1].pts : 0;
  const said = RESULT.segments.length ? RESULT.segments[RESULT.segments.length - 1].end : 0;
  return Math.max(isFinite(MEDIA.duration) ? MEDIA.duration : 0, last, said, 0.1);
}

function rows() {
  const faces = RESULT.frames.reduce((n, f) => Math.max(n, f.faces.length), 0), out = [];
  for (let i = 0; i < faces; i++) out.push([`Face ${i + 1}`, (push) => RESULT.frames.forEach((f, j) => {
    const next = j + 1 < RESULT.frames.length ? RESULT.frames[j + 1].pts : f.pts + 1 / 30;
    if (f.faces[i]) push(f.pts, next, f.faces[i].emotion);
  })]);
  for (const name of ["voice", "fused"]) {
    if (RESULT.segments.some((s) => s[name])) out.push([name === "voice" ? "Voice" : "Fused", (push) =>
      RESULT.segments.forEach((s) => { if (s[name]) push(s.start, s.end, s[name].emotion); })]);
  }
  return out;
}

function drawTimeline() {
  const canvas = document.getElementById("timeline");
  if (RESULT.kind === "image") return;
  const list = rows(), left = 70, rowH = 22, width = canvas.clientWidth || 600;
  canvas.width = width; canvas.height = rowH * list.length + 26;
  const g = canvas.getContext("2d"), span = duration(), x = (t) => left + (width - left - 8) * t / span;
  g.clearRect(0, 0, canvas.width, canvas.height); g.font = "12px system-ui, sans-serif";
  list.forEach(([name, each], r) => {
    g.fillStyle = "#8a939e"; g.fillText(name, 6, r * rowH + 15);
    each((t0, t1, emotion) => { g.fillStyle = COLORS[emotion]; g.fillRect(x(t0), r * rowH + 3, Math.max(1, x(t1) - x(t0)), rowH - 6); });
  });
  const axisY = rowH * list.length; g.fillStyle = "#8a939e";
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((s) => (width - left) / (span / s) >= 60) || 600;
  for (let t = 0; t <= span; t += step) { g.fillRect(x(t), axisY, 1, 5); g.fillText(clock(t).replace(/\.0$/, ""), x(t) - 12, axisY + 18); }
  g.fillStyle = "#fff"; g.fillRect(x(now()) - 1, 0, 2, axisY);  // the playing position
  canvas.dataset.rows = String(list.length);
  canvas.dataset.span = String(span);
}

function seekFromTimeline(ev) {
  const canvas = ev.currentTarget, left = 70, rect = canvas.getBoundingClientRect();
  const t = Math.max(0, Math.min(duration(), (ev.clientX - rect.left - left) / (rect.width - left - 8) * duration()));
  MEDIA.currentTime = t;
  drawTimeline();
}

function segmentsTable(segments) {
  const box = document.getElementById("segments");
  if (!segments.length) { box.replaceChildren(); return; }
  const cell = (r) => r ? el("span", {style: `color:${COLORS[r.emotion]}`}, `${r.emotion} ${Math.round(100 * r.confidence)}%`) : "–";
  const body = segments.map((s) => {
    const tr = el("tr", {}, el("td", {}, `${clock(s.start)}–${clock(s.end)}`), el("td", {}, cell(s.voice)), el("td", {}, cell(s.face)), el("td", {}, cell(s.fused)));
    tr.style.cursor = "pointer"; tr.onclick = () => { MEDIA.currentTime = s.start; }; return tr;
  });
  box.replaceChildren(el("h3", {}, "Speech segments"), el("table", {id: "segment-table"},
    el("tr", {}, el("th", {}, "when"), el("th", {}, "voice"), el("th", {}, "face"), el("th", {}, "fused")), ...body));
}

// The inputs listen at once and send() waits for the login check: a file picked while /api/me is
// still on its way is analysed, not lost.
const READY = me();
READY.then(() => document.getElementById("legend").append(legend()));
(() => {
  const input = document.getElementById("file"), drop = document.getElementById("drop");
  input.addEventListener("change", () => { if (input.files[0]) send(input.files[0]); });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); if (ev.dataTransfer.files[0]) send(ev.dataTransfer.files[0]); });
  const timeline = document.getElementById("timeline");
  timeline.addEventListener("pointerdown", (ev) => { timeline.setPointerCapture(ev.pointerId); seekFromTimeline(ev); });
  timeline.addEventListener("pointermove", (ev) => { if (ev.buttons & 1) seekFromTimeline(ev); });
})();
