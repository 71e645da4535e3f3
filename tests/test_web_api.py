"""The dashboard's API against the real server: real uvicorn on a loopback port, real HTTP."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from starlette.routing import Mount, Route

from edgeemo.web.users import UserStore
from testkit.webclient import ADMIN_PW, VIEWER_PW, Client, LiveStream, make_event, start_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def web(tmp_path):
    alerts: list = []
    server, journal = start_server(tmp_path, events=250, tick_s=0.1, alerts=alerts)
    server.alerts_sent = alerts
    yield server, journal
    server.stop()
    journal.close()


def admin(server) -> Client:
    c = Client(server.port)
    assert c.login("admin", ADMIN_PW).status == 200
    return c


def routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, read from its routing table; static files by one example."""
    out = []
    for route in app.routes:
        if isinstance(route, Mount):
            out += [("GET", f"{route.path}/{name}") for name in ("live.js", "common.js", "vendor/uPlot.iife.min.js")]
        elif isinstance(route, Route):
            path = route.path.replace("{name}", "happy-now")
            out += [(m, path) for m in sorted(route.methods - {"HEAD"})]
    return out


def test_login_sets_a_strict_httponly_cookie_and_wrong_password_is_401(web):
    server, journal = web
    assert server.users.path == journal.path.parent / "users.db"  # the user store follows journal.path
    c = Client(server.port)
    assert c.login("admin", "not the password").status == 401
    assert c.login("nobody", ADMIN_PW).status == 401
    reply = c.login("admin", ADMIN_PW)
    assert reply.status == 200 and reply.json()["role"] == "admin"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert c.request("GET", "/api/me").json()["user"] == "admin"
    assert c.write("POST", "/api/logout").status == 200
    assert c.request("GET", "/api/me").status == 401


def test_every_route_but_the_login_needs_a_session(web):
    server, _ = web
    anonymous = Client(server.port)
    checked = routes(server.app)
    assert len(checked) > 15
    for method, path in checked:
        reply = anonymous.request(method, path, {} if method != "GET" else None)
        if path in ("/login", "/api/login"):
            continue
        if path.startswith("/api/"):
            assert reply.status == 401, (method, path, reply.status)
        else:
            assert reply.status == 303 and reply.headers["location"] == "/login", (method, path, reply.status)
    assert anonymous.request("GET", "/static/login.js").status == 200  # the login page's own assets
    assert anonymous.request("GET", "/login").status == 200
    a = admin(server)
    for method, path in checked:  # and with a session each one answers (no 401, no 500)
        if method == "GET" and path != "/api/live":
            off = path == "/api/preview.jpg"  # web.preview is off here: no pixels, even with a session
            assert a.request(method, path).status == (404 if off else 200), (method, path)


def test_rate_limit_after_five_failures_per_address(web):
    server, _ = web
    c = Client(server.port)
    for _ in range(5):
        assert c.login("admin", "wrong wrong wrong").status == 401
    reply = c.login("admin", ADMIN_PW)  # even the right password waits
    assert reply.status == 429 and int(reply.headers["retry-after"]) >= 1
    other = Client(server.port, address="127.0.0.2")  # another client address is not held up
    assert other.login("admin", ADMIN_PW).status == 200


def test_state_changes_need_the_csrf_token(web):
    server, _ = web
    c = admin(server)
    rules = c.request("GET", "/api/rules").json()["rules"]
    assert c.request("PUT", "/api/rules", rules).status == 403
    assert c.request("PUT", "/api/rules", rules, {"X-CSRF-Token": "forged"}).status == 403
    assert c.request("POST", "/api/logout").status == 403
    assert c.write("PUT", "/api/rules", rules).status == 200


def test_viewer_gets_403_on_admin_routes(web):
    server, _ = web
    v = Client(server.port)
    assert v.login("viewer", VIEWER_PW).status == 200
    rules = v.request("GET", "/api/rules").json()
    assert rules["can_edit"] is False
    assert v.write("PUT", "/api/rules", rules["rules"]).status == 403
    assert v.request("GET", "/api/users").status == 403
    assert v.write("POST", "/api/users", {"username": "x", "role": "admin", "password": "p" * 12}).status == 403
    # but a viewer may mute a rule for themselves
    assert v.write("PUT", "/api/rules/happy-now/mine", {"muted": True}).status == 200
    assert v.request("GET", "/api/rules").json()["prefs"]["happy-now"]["muted"] is True


def test_events_paging_matches_the_journal(web):
    server, journal = web
    c = admin(server)
    seen, cursor = [], 0
    while True:
        page = c.request("GET", f"/api/events?limit=40&cursor={cursor}").json()
        seen += page["events"]
        if page["next"] is None:
            break
        cursor = page["next"]
    assert seen == journal.query(limit=10_000) and len(seen) == 250
    assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)
    first = seen[0]["ts"]
    since = time.mktime(time.strptime(first[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + 100
    window = c.request("GET", f"/api/events?since={since}&until={since + 20}&modality=face").json()
    assert window["events"] == journal.query(since=since, until=since + 20, modality="face")
    assert 10 <= len(window["events"]) <= 20 and window["next"] is None
    assert c.request("GET", "/api/events?limit=zero").status == 400


def test_exports_have_one_row_per_event_of_the_selection(web):
    server, journal = web
    c = admin(server)
    reply = c.request("GET", "/api/events.csv?modality=voice")
    assert reply.status == 200 and "attachment" in reply.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.body.decode())))
    assert len(rows) == len(journal.query(modality="voice")) == 50
    assert {r["modality"] for r in rows} == {"voice"}
    everything = c.request("GET", "/api/events.json").json()
    assert len(everything) == 250 and everything == journal.query(limit=10_000)


def test_stats_share_per_minute_sums_to_one(web):
    server, _ = web
    stats = admin(server).request("GET", "/api/stats?bucket=minute").json()
    assert sum(stats["count"]) == 250 and len(stats["t"]) >= 4
    for i in range(len(stats["t"])):
        assert abs(sum(stats["share"][k][i] for k in stats["share"]) - 1) < 1e-3
    assert stats["share"]["happy"][1] > 0.2 and stats["share"]["angry"] == [0.0] * len(stats["t"])


def test_state_and_live_feed(web):
    server, _ = web
    c = admin(server)
    face = {"track": 3, "source": "default", "emotion": "sad", "confidence": 0.8,
            "probs": {"sad": 0.8, "neutral": 0.2}, "box": [1, 2, 3, 4]}
    server.feed.state([face])
    assert c.request("GET", "/api/state").json()["faces"] == [face]
    live = LiveStream(c)
    assert live.response.status == 200 and live.response.getheader("content-type").startswith("text/event-stream")
    time.sleep(0.3)
    server.feed.publish([make_event(999, time.time(), "surprise", track=3)])
    deadline = time.monotonic() + 5
    while '"seq":999' not in live.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    live.close()
    text = live.text()
    assert "event: state" in text and '"sad"' in text
    assert "event: event" in text and '"seq":999' in text


def test_rule_fires_once_to_mqtt_hook_with_the_alert_schema(web):
    server, _ = web
    face = {"track": 1, "source": "default", "emotion": "happy", "confidence": 0.9, "probs": {"happy": 0.9}, "box": None}
    deadline = time.time() + 5
    while time.time() < deadline and not server.alerts_sent:
        server.feed.state([face])
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(server.alerts_sent) == 1  # fires once, not on every tick while it holds
    schema = json.loads((ROOT / "edgeemo" / "alert.schema.json").read_text())
    jsonschema.validate(server.alerts_sent[0], schema)
    assert server.alerts_sent[0]["rule"] == "happy-now"
    c = admin(server)
    assert c.request("GET", "/api/alerts").json()["alerts"][0]["text"] == "Keep smiling"
    v = Client(server.port)
    v.login("viewer", VIEWER_PW)
    v.write("PUT", "/api/rules/happy-now/mine", {"muted": True})
    assert v.request("GET", "/api/alerts").json()["alerts"] == []


def test_admin_adds_a_user_and_system_report(web):
    server, _ = web
    c = admin(server)
    assert c.write("POST", "/api/users", {"username": "ann", "role": "viewer", "password": "short"}).status == 400
    assert c.write("POST", "/api/users", {"username": "ann", "role": "viewer", "password": "long enough pw"}).status == 200
    assert Client(server.port).login("ann", "long enough pw").status == 200
    system = c.request("GET", "/api/system").json()
    assert system["models"]["face"].startswith("edgeemo-face-int8.json") and system["cpu_cores"] >= 0


def test_user_store_file_is_private_and_first_start_makes_admin(tmp_path):
    store = UserStore(tmp_path / "sub" / "users.db")
    password = store.ensure_admin()
    assert password and len(password) >= 12 and store.verify("admin", password) == "admin"
    assert store.ensure_admin() is None
    assert stat.S_IMODE(os.stat(tmp_path / "sub" / "users.db").st_mode) == 0o600
    first = tmp_path / "sub" / "admin-password"  # handed over in a private file, not in the log
    assert stat.S_IMODE(first.stat().st_mode) == 0o600 and first.read_text().strip() == password
    assert store.verify("admin", password + "x") is None
    store.close()


def test_non_loopback_without_tls_is_a_config_error(tmp_path):
    from edgeemo.config.load import load_config
    from edgeemo.config.schema import ConfigError
    with pytest.raises(ConfigError, match="web: .*not a loopback address"):
        load_config(None, {"web.host": "0.0.0.0"})
    assert load_config(None, {"web.host": "0.0.0.0", "web.allow_plain_http": True}).web.host == "0.0.0.0"


def test_user_command_reads_the_password_from_stdin(tmp_path):
    import subprocess
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(f"web:\n  users_path: {tmp_path / 'u.db'}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = lambda *args, stdin: subprocess.run([sys.executable, "-m", "edgeemo.cli", "user", *args, "--config", str(cfg)],
                                              input=stdin, capture_output=True, text=True, env=env, timeout=60)
    added = run("add", "ann", "--role", "viewer", stdin="a long password\n")
    assert added.returncode == 0, added.stderr
    short = run("passwd", "ann", stdin="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr and "Traceback" not in short.stderr
    assert run("passwd", "ann", stdin="another long one\n").returncode == 0
    store = UserStore(tmp_path / "u.db")
    assert store.verify("ann", "another long one") == "viewer" and store.verify("ann", "a long password") is None
    store.close()

    assert run("add", "bob", "--role", "admin", stdin="bob's long password\n").returncode == 0
    assert run("list", stdin="").stdout == "ann\tviewer\nbob\tadmin\n"
    last_admin = run("delete", "bob", stdin="")
    assert last_admin.returncode == 2 and "'bob' is the last admin" in last_admin.stderr
    assert run("delete", "ann", stdin="").returncode == 0
    gone = run("delete", "ann", stdin="")
    assert gone.returncode == 2 and "no user 'ann'" in gone.stderr
    assert run("list", stdin="").stdout == "bob\tadmin\n"


def at_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the CLI with a real pseudo-terminal as its terminal; type each answer at each prompt."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal and its stdin
        os.execve(sys.executable, [sys.executable, "-m", "edgeemo.cli", *args], {**os.environ, "PYTHONPATH": str(ROOT)})
    transcript, pending = b"", list(answers)
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"no answer from the command: {transcript!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed its terminal
            break
        if not chunk:
            break
        transcript += chunk
        if pending and transcript.endswith(b": "):  # a new prompt (after an answer the line ends in CR LF)
            os.write(fd, pending.pop(0).encode() + b"\n")
    return os.waitpid(pid, 0)[1] >> 8, transcript.decode(errors="replace")


def test_user_passwd_at_a_terminal_asks_twice_without_echo(tmp_path):
    cfg = tmp_path / "edgeemo.yaml"
    cfg.write_text(f"web:\n  users_path: {tmp_path / 'u.db'}\n")
    code, transcript = at_a_terminal(["user", "add", "cat", "--role", "viewer", "--config", str(cfg)],
                                     ["terminal secret 1", "terminal secret 1"])
    assert code == 0, transcript
    assert "password for cat" in transcript and "again" in transcript and "terminal secret" not in transcript
    code, transcript = at_a_terminal(["user", "passwd", "cat", "--config", str(cfg)],
                                     ["terminal secret 2", "a typo in it 2"])
    assert code == 2 and "the two passwords differ" in transcript and "secret 2" not in transcript
    store = UserStore(tmp_path / "u.db")
    assert store.verify("cat", "terminal secret 1") == "viewer"  # the mismatch changed nothing
    store.close()


def test_live_feed_queues_are_bounded_and_drop_the_oldest():
    import asyncio

    from edgeemo.web.feed import LiveFeed

    feed = LiveFeed(queue_size=8)

    async def run() -> None:
        sub = feed.subscribe(asyncio.get_running_loop())
        feed.publish([make_event(seq, 0.0) for seq in range(1, 21)])  # a client that never reads
        assert [e["seq"] for e in sub.events] == list(range(13, 21)) and sub.dropped == 12
        await asyncio.sleep(0)
        assert sub.wake.is_set()
        feed.unsubscribe(sub)
        feed.state([])
        assert feed.listeners == 0 and len(sub.events) == 8  # nothing more reaches a client that left
        feed.subscribe(asyncio.get_running_loop())  # one whose loop closes before it unsubscribes

    asyncio.run(run())
    feed.publish([make_event(21, 0.0)])  # the pipeline never sees the closed loop's error
    feed.state([])


def test_live_state_is_throttled_per_client_and_sent_only_on_change(web):
    server, _ = web
    c = admin(server)
    live = LiveStream(c)
    end, i = time.monotonic() + 1.0, 0
    while time.monotonic() < end:  # 100 states a second, each visibly different
        i += 1
        server.feed.state([{"track": 1, "source": "default", "emotion": "happy", "confidence": (i % 50) / 50,
                            "probs": {"happy": (i % 50) / 50}, "box": None}])
        time.sleep(0.01)
    states_busy = live.count("state")
    for _ in range(50):  # the same reading again and again: nothing new to send
        server.feed.state([{"track": 1, "source": "default", "emotion": "happy", "confidence": 0.5,
                            "probs": {"happy": 0.5}, "box": None}])
        time.sleep(0.01)
    time.sleep(0.3)
    states_same = live.count("state") - states_busy
    live.close()
    assert 1 <= states_busy <= 12 and states_same <= 2


def test_tls_serves_https_with_a_secure_cookie(tmp_path):
    import http.client
    import ssl
    import subprocess

    from edgeemo.config.load import load_config
    from edgeemo.journal.store import Journal
    from edgeemo.web.server import WebServer

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    cfg = load_config(None, {"web.port": 0, "journal.path": str(tmp_path / "journal.db"),
                             "web.tls.cert_file": str(tmp_path / "cert.pem"), "web.tls.key_file": str(tmp_path / "key.pem")})
    journal = Journal.open(cfg.journal)
    server = WebServer(cfg, journal)
    server.users.add("admin", "admin", ADMIN_PW)
    assert server.start() and server.url.startswith("https://")
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
        conn.request("POST", "/api/login", json.dumps({"username": "admin", "password": ADMIN_PW}),
                     {"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 200 and "secure" in reply.getheader("set-cookie").lower()
        conn.close()
    finally:
        server.stop()
        journal.close()


def test_a_bad_tls_file_is_a_config_error(tmp_path):
    from edgeemo.config.load import load_config
    from edgeemo.config.schema import ConfigError
    from edgeemo.journal.store import Journal
    from edgeemo.web.server import WebServer

    (tmp_path / "bad.pem").write_text("not a certificate\n")
    cfg = load_config(None, {"web.port": 0, "journal.path": str(tmp_path / "journal.db"),
                             "web.tls.cert_file": str(tmp_path / "bad.pem"), "web.tls.key_file": str(tmp_path / "bad.pem")})
    journal = Journal.open(cfg.journal)
    server = WebServer(cfg, journal)
    with pytest.raises(ConfigError, match="web.tls: cannot load"):
        server.start()
    server.stop()
    journal.close()


def test_rules_an_admin_saves_survive_a_restart_and_bad_rules_are_400(web, tmp_path):
    server, journal = web
    c = admin(server)
    new = [{"name": "sad-now", "emotion": "sad", "min_share": 0.7, "window_s": 30, "text": "Take a break",
            "modality": "voice"}]
    assert c.write("PUT", "/api/rules", [{**new[0], "emotion": "bored"}]).status == 400
    assert c.write("PUT", "/api/rules", {"not": "a list"}).status == 400
    assert c.write("PUT", "/api/rules", new).json()["rules"] == new
    server.stop()
    from edgeemo.web.server import WebServer
    again = WebServer(server.cfg, journal)
    assert [r.__dict__ for r in again.engine.rules] == new  # the saved rules win over web.rules
    again.users.close()
