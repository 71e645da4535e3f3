"use strict";
// Suggestions: fired alerts (polled), the rules with this user's mute / tuning, the admin's editor.
async function alerts() {
  const {alerts} = await api("/api/alerts");
  const box = document.getElementById("alerts"); box.innerHTML = "";
  if (!alerts.length) box.append(el("p", {class: "dim"}, "No suggestion yet."));
  for (const a of alerts) {
    box.append(el("div", {class: "alert", "data-rule": a.rule}, el("b", {}, a.text), " ",
                  el("span", {class: "dim"}, `${a.rule}: ${a.emotion} ${Math.round(100 * a.share)} % of ${a.window_s} s · ${new Date(a.ts).toLocaleString()}`)));
  }
}

async function rules() {
  const data = await api("/api/rules");
  const body = document.querySelector("#rules tbody"); body.innerHTML = "";
  for (const r of data.rules) {
    const p = data.prefs[r.name] || {muted: false, min_share: null, window_s: null};
    const muted = el("input", {type: "checkbox"}); muted.checked = p.muted;
    const share = el("input", {type: "number", step: "0.05", min: "0.05", max: "1", placeholder: r.min_share, size: 5});
    const win = el("input", {type: "number", step: "1", min: "1", placeholder: r.window_s, size: 6});
    if (p.min_share) share.value = p.min_share; if (p.window_s) win.value = p.window_s;
    const save = el("button", {}, "Save");
    save.onclick = () => api(`/api/rules/${r.name}/mine`, {method: "PUT", body: JSON.stringify(
      {muted: muted.checked, min_share: share.value ? +share.value : null, window_s: win.value ? +win.value : null})});
    body.append(el("tr", {}, el("td", {}, r.name), el("td", {}, `${r.emotion} ≥ ${Math.round(100 * r.min_share)} % of ${r.window_s} s (${r.modality})`),
                   el("td", {}, r.text), el("td", {}, muted), el("td", {}, share), el("td", {}, win), el("td", {}, save)));
  }
  if (data.can_edit) {
    document.getElementById("rules-editor").hidden = false;
    document.getElementById("rules-json").value = JSON.stringify(data.rules, null, 2);
  }
}

me().then(() => {
  document.getElementById("rules-save").onclick = async () => {
    const msg = document.getElementById("rules-msg");
    try {
      await api("/api/rules", {method: "PUT", body: document.getElementById("rules-json").value});
      msg.textContent = "Saved."; msg.className = "dim"; rules();
    } catch (e) { msg.textContent = e.message; msg.className = "err"; }
  };
  rules(); alerts(); setInterval(alerts, 2000);
});
