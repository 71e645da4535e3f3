"""The dashboard's Starlette app: the JSON API under /api (the one the pages use) and the pages.

Every route but the login page, POST /api/login and the login page's two assets needs a session
(AuthMiddleware); admin routes answer 403 to viewers.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edgeemo import LABELS
from edgeemo.config.schema import Config, RuleConfig
from edgeemo.core.metrics import Metrics
from edgeemo.web.feed import LiveFeed
from edgeemo.web import history
from edgeemo.web.analyze import Refused, UploadAnalyzer
from edgeemo.web.auth import COOKIE, SESSION_S, AuthMiddleware, LoginLimiter, Session, Sessions
from edgeemo.web.suggest import RulesEngine
from edgeemo.web.preview import FramePreview
from edgeemo.web.system import SystemHistory, system_report
from edgeemo.web.users import UserError, UserStore

STATIC = Path(__file__).resolve().parent / "static"
PAGES = ("live", "analyze", "history", "suggestions", "system")
STATE_HZ = 10.0
PING_S = 15.0
RULES = TypeAdapter(list[RuleConfig])


@dataclass
class WebContext:
    """What the routes read: the journal (anything with `query`), the live feed, accounts, rules."""

    cfg: Config
    journal: history.EventQuery
    feed: LiveFeed
    users: UserStore
    engine: RulesEngine
    metrics: Metrics | None = None
    preview: FramePreview | None = None       # set only when web.preview is on
    analyzer: UploadAnalyzer | None = None    # POST /api/analyze (404 without)
    history: SystemHistory | None = None      # the System page's last hour
    secure_cookie: bool = False
    sessions: Sessions = field(default_factory=Sessions)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)


def session_of(request: Request, admin: bool = False) -> Session:
    session: Session = request.state.session
    if admin and session.role != "admin":
        raise HTTPException(403, "admins only")
    return session


def create_app(ctx: WebContext) -> Starlette:
    async def login_page(_: Request) -> Response:
        return FileResponse(STATIC / "login.html")

    async def page(request: Request) -> Response:
        name = request.url.path.strip("/") or "live"
        if name not in PAGES:
            return RedirectResponse("/live", 303)
        return FileResponse(STATIC / f"{name}.html")

    async def login(request: Request) -> Response:
        address = request.client.host if request.client else "?"
        wait = ctx.limiter.blocked(address)
        if wait:
            return JSONResponse({"error": "too many failed logins: try again later"}, 429,
                                headers={"Retry-After": str(int(wait) + 1)})
        try:
            body = await request.json()
            name, password = str(body["username"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send JSON {"username", "password"}'}, 400)
        role = await asyncio.to_thread(ctx.users.verify, name, password)  # scrypt: keep the loop free
        if role is None:
            ctx.limiter.fail(address)
            return JSONResponse({"error": "wrong user name or password"}, 401)
        token, session = ctx.sessions.create(name, role)
        response = JSONResponse({"user": name, "role": role, "csrf": session.csrf})
        response.set_cookie(COOKIE, token, max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=ctx.secure_cookie, path="/")
        return response

    async def logout(request: Request) -> Response:
        ctx.sessions.drop(request.cookies.get(COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    async def me(request: Request) -> Response:
        s = session_of(request)
        return JSONResponse({"user": s.user, "role": s.role, "csrf": s.csrf, "labels": LABELS,
                             "preview": ctx.preview is not None, "sources": [src.name for src in ctx.cfg.sources]})

    async def events(request: Request) -> Response:
        filters = selection(request)
        limit = number(request, "limit", int, 1000, 1, 10_000)
        cursor = number(request, "cursor", int, 0, 0, None)
        found, nxt = await asyncio.to_thread(history.page, ctx.journal, limit, cursor, **filters)
        return JSONResponse({"events": found, "next": nxt})

    async def export_csv(request: Request) -> Response:
        rows = await asyncio.to_thread(lambda: list(history.csv_rows(history.select(ctx.journal, **selection(request)))))
        return Response("".join(rows), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="edgeemo-events.csv"'})

    async def export_json(request: Request) -> Response:
        found = await asyncio.to_thread(lambda: list(history.select(ctx.journal, **selection(request))))
        return JSONResponse(found, headers={"Content-Disposition": 'attachment; filename="edgeemo-events.json"'})

    async def preview(request: Request) -> Response:
        if ctx.preview is None:
            raise HTTPException(404, "the preview is off (web.preview: false)")
        jpeg = await asyncio.to_thread(ctx.preview.jpeg)
        if jpeg is None:
            raise HTTPException(503, "no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def analyze(request: Request) -> Response:
        session_of(request)  # viewers too: it reads a file, it changes nothing
        if ctx.analyzer is None:
            raise HTTPException(404, "file analysis is not available here")
        if not ctx.analyzer.enter():
            return JSONResponse({"error": "busy analysing other files: try again in a moment"}, 429,
                                headers={"Retry-After": "2"})
        try:
            data, name, kind = await ctx.analyzer.read(request)
            return JSONResponse(await ctx.analyzer.analyse(data, name, kind))
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        finally:
            ctx.analyzer.leave()

    async def state(request: Request) -> Response:
        return JSONResponse(ctx.feed.snapshot())

    async def stats(request: Request) -> Response:
        bucket = request.query_params.get("bucket", "minute")
        if bucket not in history.BUCKETS:
            raise HTTPException(400, f"bucket must be one of {', '.join(history.BUCKETS)}")
        filters = selection(request)
        result = await asyncio.to_thread(lambda: history.shares(history.select(ctx.journal, **filters), bucket))
        return JSONResponse(result)

    async def live(request: Request) -> Response:
        return StreamingResponse(live_stream(ctx.feed), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def rules(request: Request) -> Response:
        s = session_of(request, admin=request.method == "PUT")
        if request.method == "PUT":
            try:
                new = RULES.validate_python(await request.json())
            except (ValueError, ValidationError) as exc:
                raise HTTPException(400, f"rules: {exc}".splitlines()[0]) from None
            ctx.engine.set_rules(new)
            ctx.users.set_setting("rules", json.dumps([r.model_dump() for r in new]))
        prefs = ctx.users.prefs(s.user)
        return JSONResponse({"rules": [r.__dict__ for r in ctx.engine.rules], "prefs": prefs,
                             "can_edit": s.role == "admin"})

    async def my_rule(request: Request) -> Response:
        s = session_of(request)
        body = await json_object(request)
        name = request.path_params["name"]
        if name not in {r.name for r in ctx.engine.rules}:
            raise HTTPException(404, f"no rule {name!r}")
        try:
            share = None if body.get("min_share") is None else float(body["min_share"])
            window = None if body.get("window_s") is None else float(body["window_s"])
            if (share is not None and not 0 < share <= 1) or (window is not None and window <= 0):
                raise ValueError
        except (TypeError, ValueError):
            raise HTTPException(400, "min_share must be in (0, 1], window_s > 0") from None
        ctx.users.set_pref(s.user, name, bool(body.get("muted")), share, window)
        return JSONResponse({"prefs": ctx.users.prefs(s.user)})

    async def alerts(request: Request) -> Response:
        s = session_of(request)
        mine = ctx.engine.alerts_for(ctx.users.prefs(s.user))
        return JSONResponse({"alerts": [{k: v for k, v in a.items() if k != "_key"} for a in reversed(mine)]})

    async def users(request: Request) -> Response:
        session_of(request, admin=True)
        if request.method == "POST":
            body = await json_object(request)
            try:
                await asyncio.to_thread(ctx.users.add, str(body.get("username", "")), str(body.get("role", "")),
                                        str(body.get("password", "")))
            except UserError as exc:
                raise HTTPException(400, str(exc)) from None
        return JSONResponse({"users": ctx.users.list()})

    async def system(request: Request) -> Response:
        report = system_report(ctx.cfg, ctx.metrics, ctx.feed)
        if ctx.history is not None:
            report["history"] = ctx.history.series()
        return JSONResponse(report)

    routes = [
        Route("/login", login_page),
        Route("/", page),
        *(Route(f"/{name}", page) for name in PAGES),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/events", events),
        Route("/api/events.csv", export_csv),
        Route("/api/events.json", export_json),
        Route("/api/state", state),
        Route("/api/analyze", analyze, methods=["POST"]),
        Route("/api/preview.jpg", preview),
        Route("/api/stats", stats),
        Route("/api/live", live),
        Route("/api/rules", rules, methods=["GET", "PUT"]),
        Route("/api/rules/{name}/mine", my_rule, methods=["PUT"]),
        Route("/api/alerts", alerts),
        Route("/api/users", users, methods=["GET", "POST"]),
        Route("/api/system", system),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.add_middleware(AuthMiddleware, sessions=ctx.sessions)
    return app


async def json_object(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HTTPException(400, "send a JSON object")
    return body


async def http_error(_: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, exc.status_code)


def number(request: Request, key: str, kind: type, default, low, high):
    raw = request.query_params.get(key)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise HTTPException(400, f"{key}: not a number ({raw!r})") from None
    if value < low or (high is not None and value > high):
        raise HTTPException(400, f"{key}: must be {low}..{high if high is not None else ''} (got {raw})")
    return value


def selection(request: Request) -> dict:
    """The journal filters of a request: since/until (Unix seconds), source, modality, track."""
    q = request.query_params
    filters = {"since": number(request, "since", float, None, 0, None),
               "until": number(request, "until", float, None, 0, None),
               "source": q.get("source") or None, "modality": q.get("modality") or None,
               "track": number(request, "track", int, None, 0, None)}
    if filters["modality"] not in (None, "face", "voice", "fused"):
        raise HTTPException(400, "modality must be face, voice or fused")
    return filters


def sse(kind: str, data: object) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def rounded_faces(faces: list[dict]) -> list[dict]:
    """State as sent to browsers: probabilities to 2 decimals, so "only changes" means visible ones."""
    return [{**f, "probs": {k: round(float(v), 2) for k, v in f.get("probs", {}).items()},
             "confidence": round(float(f.get("confidence", 0)), 2)} for f in faces]


async def live_stream(feed: LiveFeed):
    """SSE: every published event as it comes, the state at most STATE_HZ a second and only on change."""
    sub = feed.subscribe(asyncio.get_running_loop())
    last_version, last_sent, last_at = -1, None, 0.0
    try:
        yield "retry: 2000\n\n"
        while not feed.stopped:
            while sub.events:
                yield sse("event", sub.events.popleft())
            if feed.state_version != last_version:
                wait = 1.0 / STATE_HZ - (time.monotonic() - last_at)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # events that came meanwhile go first
                last_version, last_at = feed.state_version, time.monotonic()
                faces = rounded_faces(feed.faces)
                if faces != last_sent:
                    last_sent = faces
                    yield sse("state", {"ts": feed.state_at, "faces": faces})
                continue
            sub.wake.clear()
            try:
                await asyncio.wait_for(sub.wake.wait(), PING_S)
            except asyncio.TimeoutError:
                yield ": ping\n\n"
    finally:
        feed.unsubscribe(sub)
