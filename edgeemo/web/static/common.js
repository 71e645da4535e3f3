"use strict";
// Shared by every page: who is logged in, the CSRF token, the nav bar, emotion colours.
const COLORS = {angry:"#e5484d", disgust:"#8e4ec6", fear:"#f5a524", happy:"#30a46c", sad:"#3e63dd",
                surprise:"#12a594", neutral:"#8a939e"};
const LABELS = Object.keys(COLORS);
let ME = null;
async function me() {
  const r = await fetch("/api/me");
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  ME = await r.json();
  const nav = document.createElement("nav");
  for (const [href, name] of [["/live","Live"],["/history","History"],["/suggestions","Suggestions"],["/system","System"]]) {
    const a = document.createElement("a"); a.href = href; a.textContent = name;
    if (location.pathname === href) a.className = "on"; nav.appendChild(a);
  }
  const who = document.createElement("span"); who.className = "me"; who.textContent = `${ME.user} (${ME.role})`;
  const out = document.createElement("button"); out.id = "logout"; out.textContent = "Log out";
  out.onclick = async () => { await api("/api/logout", {method: "POST"}); location.href = "/login"; };
  nav.append(who, out); document.body.prepend(nav);
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
