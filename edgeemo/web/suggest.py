"""Suggestion rules: "sad for at least 60 % of the last 10 minutes" evaluated once a second.

Each tick samples the live feed (which emotions are showing now, per modality), keeps a ring of
samples as long as the longest window, and fires a rule when its emotion showed in at least
`min_share` of its window; it fires again only after the share fell below the threshold. The YAML
rules go to MQTT through `publish_alert`; a user's tuned copy of a rule only shows on their page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from edgeemo.config.schema import RuleConfig
from edgeemo.core.events import iso_utc, unix_time
from edgeemo.web.feed import LiveFeed

log = logging.getLogger(__name__)
VOICE_FRESH_S = 3.0
MAX_ALERTS = 200


@dataclass(frozen=True)
class Rule:
    name: str
    emotion: str
    min_share: float
    window_s: float
    text: str
    modality: str = "face"


class RulesEngine:
    """Samples `feed` every `tick_s` on its own thread; `prefs()` gives {user: {rule: overrides}}."""

    def __init__(self, rules: list[RuleConfig], feed: LiveFeed, device: str,
                 publish_alert: Callable[[dict], None] | None = None,
                 prefs: Callable[[], dict[str, dict[str, dict]]] = dict, tick_s: float = 1.0) -> None:
        self.rules = [Rule(**r.model_dump()) for r in rules]
        self.feed, self.device, self.publish_alert, self.prefs, self.tick_s = feed, device, publish_alert, prefs, tick_s
        self.samples: deque[tuple[float, dict[str, frozenset]]] = deque()
        self.alerts: deque[dict] = deque(maxlen=MAX_ALERTS)
        self._firing: set[Rule] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suggestions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def set_rules(self, rules: list[RuleConfig]) -> None:
        with self._lock:
            self.rules = [Rule(**r.model_dump()) for r in rules]

    def effective(self, user_prefs: dict[str, dict]) -> list[Rule]:
        """One user's rules: the YAML's, minus muted ones, with their own min_share / window_s."""
        out = []
        for rule in self.rules:
            pref = user_prefs.get(rule.name)
            if pref is None:
                out.append(rule)
            elif not pref["muted"]:
                out.append(replace(rule, min_share=pref["min_share"] or rule.min_share,
                                   window_s=pref["window_s"] or rule.window_s))
        return out

    def alerts_for(self, user_prefs: dict[str, dict]) -> list[dict]:
        mine = {repr(r) for r in self.effective(user_prefs)}
        return [a for a in list(self.alerts) if a["_key"] in mine]

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick(time.time())
            except Exception:  # a bad preference row must not stop the suggestions
                log.exception("suggestion rules failed")

    def tick(self, now: float) -> None:
        self.samples.append((now, self._sample(now)))
        with self._lock:
            base = list(self.rules)
        variants = set(base)
        for user_prefs in self.prefs().values():
            variants.update(self.effective(user_prefs))
        longest = max((r.window_s for r in variants), default=0.0)
        while self.samples and self.samples[0][0] < now - longest:
            self.samples.popleft()
        for rule in variants:
            share = self.share(rule, now)
            if share >= rule.min_share and rule not in self._firing:
                self._firing.add(rule)
                self._fire(rule, share, now, to_mqtt=rule in base)
            elif share < rule.min_share:
                self._firing.discard(rule)

    def share(self, rule: Rule, now: float) -> float:
        """Seconds of the window in which the emotion showed, over the window (missing samples count 0)."""
        hits = sum(1 for t, seen in self.samples if t > now - rule.window_s and rule.emotion in seen[rule.modality])
        return min(1.0, hits * self.tick_s / rule.window_s)

    def _sample(self, now: float) -> dict[str, frozenset]:
        faces = self.feed.faces if now - self.feed.state_at < VOICE_FRESH_S else []
        seen = {"face": frozenset(f["emotion"] for f in faces)}
        for modality in ("voice", "fused"):
            seen[modality] = frozenset(e["emotion"] for (_, m), e in list(self.feed.voice.items())
                                       if m == modality and now - unix_time(e["ts"]) < VOICE_FRESH_S)
        return seen

    def _fire(self, rule: Rule, share: float, now: float, to_mqtt: bool) -> None:
        alert = {"v": 1, "ts": iso_utc(now), "device": self.device, "rule": rule.name, "emotion": rule.emotion,
                 "modality": rule.modality, "share": round(share, 4), "min_share": rule.min_share,
                 "window_s": rule.window_s, "text": rule.text}
        self.alerts.append({**alert, "_key": repr(rule)})
        log.info("suggestion %s fired (%s %.0f %% of %g s)", rule.name, rule.emotion, 100 * share, rule.window_s)
        if to_mqtt and self.publish_alert is not None:
            try:
                self.publish_alert(alert)
            except Exception:
                log.exception("cannot publish alert %s", rule.name)
