"use strict";
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {username: document.getElementById("username").value,
                password: document.getElementById("password").value};
  const r = await fetch("/api/login", {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify(body)});
  if (r.ok) { location.href = "/live"; return; }
  document.getElementById("error").textContent =
    r.status === 429 ? "Too many attempts: wait a minute." : "Wrong user name or password.";
});
