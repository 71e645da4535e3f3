"use strict";
// Shared by every page: who is logged in, the CSRF token, the nav bar, emotion colours, reading cards,
// and the time axis the canvas charts draw.
const COLORS = {angry:"#e5484d", disgust:"#8e4ec6", fear:"#f5a524", happy:"#30a46c", sad:"#3e63dd",
                surprise:"#12a594", neutral:"#8a939e"};
const LABELS = Object.keys(COLORS);
const PAGES = [["/live", "Live"], ["/analyze", "Analyse"], ["/history", "History"], ["/suggestions", "Suggestions"],
               ["/system", "System"]];
let ME = null;
async function me() {
  const r = await fetch("/api/me");
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  ME = await r.json();
  const brand = el("a", {class: "brand", href: "/live"}, el("img", {src: "/static/favicon.svg", alt: ""}), "edgeemo");
  const links = el("div", {class: "links"});
  for (const [href, name] of PAGES) links.append(el("a", {href, class: location.pathname === href ? "on" : ""}, name));
  const who = el("span", {class: "me"}, ME.user, " ", el("span", {class: "role"}, `(${ME.role})`));
  const out = el("button", {id: "logout"}, "Log out");
  out.onclick = async () => { await api("/api/logout", {method: "POST"}); location.href = "/login"; };
  document.body.prepend(el("nav", {}, brand, links, who, out));
  return ME;
}
async function api(path, opts = {}) {
  opts.headers = Object.assign({"Content-Type": "application/json", "X-CSRF-Token": ME ? ME.csrf : ""}, opts.headers || {});
  const r = await fetch(path, opts);
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
  e.append(...children); return e;
}
function legend() {
  const box = el("div", {class: "legend"});
  for (const l of LABELS) { const s = el("span", {}, l); s.style.setProperty("--c", COLORS[l]); box.append(s); }
  return box;
}
// A card of seven bars: readingCard() builds it, showReading() fills it from {emotion, confidence, probs}.
function readingCard(key, title, source = "") {
  const bars = {}, dom = el("div", {class: "dom"}), status = el("div", {class: "status"});
  const box = el("div", {class: "card", "data-key": key}, el("h3", {}, el("span", {}, title), el("span", {class: "src"}, source)), dom);
  for (const label of LABELS) {
    const fill = el("div", {class: "fill", "data-emotion": label}); fill.style.background = COLORS[label];
    const pct = el("span");
    box.append(el("div", {class: "bar"}, el("span", {}, label), el("div", {class: "track"}, fill), pct));
    bars[label] = [fill, pct];
  }
  box.append(status);
  return {box, dom, bars, status};
}
function showReading(c, reading) {
  c.dom.textContent = `${reading.emotion} ${Math.round(100 * reading.confidence)} %`;
  c.dom.style.color = COLORS[reading.emotion];
  for (const label of LABELS) {
    const p = reading.probs[label] || 0, [fill, pct] = c.bars[label];
    fill.style.width = `${(100 * p).toFixed(1)}%`; pct.textContent = `${Math.round(100 * p)}%`;
  }
}
// Time axis ticks: a round step that gives a label about every 90 px.
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
function timeTicks(t0, t1, width) {
  const want = (t1 - t0) / Math.max(1, width / 90), step = STEPS.find((s) => s >= want) || 86400;
  const ticks = [], offset = new Date().getTimezoneOffset() * 60;  // round in local time
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) ticks.push(t);
  const fmt = step >= 86400 ? {month: "short", day: "numeric"} : step >= 60 ? {hour: "2-digit", minute: "2-digit"}
                                                               : {hour: "2-digit", minute: "2-digit", second: "2-digit"};
  return ticks.map((t) => [t, new Date(t * 1000).toLocaleString([], fmt)]);
}
function clock(seconds) {
  const m = Math.floor(seconds / 60), s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}
