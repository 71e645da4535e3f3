"""The dashboard inside the daemon: uvicorn in a thread of its own, so the pipeline never waits on it.

The socket is bound in start(), so a port in use is a clear error at start-up and port 0 works.
uvicorn installs signal handlers only on the main thread; in its own thread the daemon keeps them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable

import uvicorn

from edgeemo.config.schema import Config, ConfigError, RuleConfig
from edgeemo.core.metrics import Metrics
from edgeemo.web.analyze import UploadAnalyzer
from edgeemo.web.feed import LiveFeed
from edgeemo.web.app import RULES, WebContext, create_app
from edgeemo.web.history import EventQuery
from edgeemo.web.preview import FramePreview
from edgeemo.web.suggest import RulesEngine
from edgeemo.web.system import SystemHistory
from edgeemo.web.users import UserStore, users_path

log = logging.getLogger(__name__)


class QuietServer(uvicorn.Server):
    """uvicorn's server with its housekeeping tick (the Date header, the exit check) once a second
    instead of ten times: an idle daemon's dashboard then wakes the CPU once a second. `exit()`
    ends the wait at once, so stopping is as quick as before."""

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # set last: exit() reads it, then _wake
        while not await self.on_tick(0):  # tick 0: uvicorn's once-a-second work, every time
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def exit(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        loop = getattr(self, "_loop", None)
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has closed: the server is done already
                pass


class WebServer:
    """start() / stop(); `feed` is the live sink it shows (a fresh one unless given), `publish_alert` sends to MQTT."""

    def __init__(self, cfg: Config, journal: EventQuery, feed: LiveFeed | None = None,
                 metrics: Metrics | None = None, publish_alert: Callable[[dict], None] | None = None,
                 tick_s: float = 1.0) -> None:
        self.cfg = cfg
        self.feed = feed or LiveFeed()
        self.users = UserStore(users_path(cfg))
        self.engine = RulesEngine(stored_rules(self.users) or cfg.web.rules, self.feed, cfg.device_id, publish_alert,
                                  self.users.all_prefs, tick_s)
        tls = cfg.web.tls.cert_file is not None
        self.preview = FramePreview() if cfg.web.preview else None  # the pipeline offers it frames
        self.analyzer = UploadAnalyzer(cfg)  # its models load on the first upload
        self.ctx = WebContext(cfg, journal, self.feed, self.users, self.engine, metrics, self.preview,
                              self.analyzer, secure_cookie=tls)
        self.history = SystemHistory(cfg, lambda: self.ctx.metrics)
        self.ctx.history = self.history
        self.app = create_app(self.ctx)
        self.port: int | None = None
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cfg.web.tls.cert_file else "http"
        host = self.cfg.web.host if ":" not in self.cfg.web.host else f"[{self.cfg.web.host}]"
        return f"{scheme}://{host}:{self.port}/"

    def start(self) -> bool:
        """Serve; False (logged) when the port is taken: the daemon's events matter more than its dashboard."""
        try:
            sock = self._bind()
        except OSError as exc:
            log.error("dashboard off: cannot listen on %s:%d: %s (set web.port)", self.cfg.web.host,
                      self.cfg.web.port, exc.strerror)
            return False
        self.port = sock.getsockname()[1]
        tls = self.cfg.web.tls
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
        try:
            self._server = QuietServer(config)
            config.load()  # reads the TLS files now, so a bad one is a start-up error
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ConfigError(f"web.tls: cannot load {tls.cert_file} / {tls.key_file}: {exc}") from None
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="web", daemon=True)
        self._thread.start()
        self.engine.start()
        self.history.start()
        created = self.users.ensure_admin() is not None
        log.info("dashboard on %s", self.url)
        if created:
            log.warning("dashboard: created user 'admin'; its password is in %s (readable by this user only; "
                        "change it with `edgeemo user passwd admin`, then delete the file)",
                        self.users.first_password_path)
        else:
            log.info("dashboard: log in with an account from `edgeemo user add NAME --role admin|viewer`")
        return True

    def _bind(self) -> socket.socket:
        host, port = self.cfg.web.host, self.cfg.web.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        asyncio.run(self._server.serve(sockets=[sock]))

    def stop(self) -> None:
        """Idempotent; the live feed's stop() ends every SSE stream so uvicorn can close at once."""
        self.engine.stop()
        self.feed.stop()
        if self._server is not None:
            self._server.exit()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.analyzer.close()
        self.history.close()
        self.users.close()


def stored_rules(users: UserStore) -> list[RuleConfig] | None:
    """Rules an admin saved from the dashboard win over web.rules (they are the later edit)."""
    raw = users.setting("rules")
    return None if raw is None else RULES.validate_python(json.loads(raw))

