"""Live analysis over several worker threads (analysis.workers): each source analysed in order by one
worker, every worker used, a crashing worker restarted, a bad setting refused in one line.

The daemons here play the sample as several live cameras (its own frame rate, newest frame wins),
faces only; nothing is timed: each test waits for the frames it needs.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from edgeemo.config.load import load_config
from edgeemo.core.types import Work
from edgeemo.pipeline.pipeline import Pipeline, share_out
from edgeemo.service.daemon import Daemon

WAIT_S = 90.0   # generous: the machine may be shared


def daemon_for(tmp_path: Path, sources: int, workers: int) -> Daemon:
    cfg = load_config(None, {
        "device_id": "workers", "voice.enabled": False, "web.enabled": False, "metrics.enabled": False,
        "event_log.path": str(tmp_path / "events.jsonl"), "event_log.stdout": False,
        "analysis.workers": workers,
        "sources": [{"name": f"cam{k}", "url": "sample"} for k in range(sources)],
    })
    return Daemon(cfg)


class Seen:
    """(worker thread, frame number) of every frame published, per source; wakes a waiter when enough came."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.frames: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self._cond = threading.Condition()
        for stage in pipeline.stages:
            stage.steps = [(name, self._recording(step) if name == "publish" else step, seconds)
                           for name, step, seconds in stage.steps]

    def _recording(self, step):
        def publish(work: Work) -> Work:
            work = step(work)
            with self._cond:
                self.frames[work.frame.source].append((threading.current_thread().name, work.frame.index))
                self._cond.notify_all()
            return work
        return publish

    def wait_for(self, sources: list[str], frames: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: all(len(self.frames[s]) >= frames for s in sources), WAIT_S), \
                {s: len(self.frames[s]) for s in sources}


def test_sources_are_shared_out_round_robin():
    assert share_out(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert share_out(["a"], 1) == [["a"]]


def test_each_source_is_analysed_in_order_by_one_worker_and_every_worker_is_used(tmp_path):
    daemon = daemon_for(tmp_path, sources=4, workers=2)
    pipeline = daemon.pipeline
    names = [f"cam{k}" for k in range(4)]
    assert [sorted(m.sources) for m in pipeline.mailboxes] == [["cam0", "cam2"], ["cam1", "cam3"]]
    seen = Seen(pipeline)
    daemon.start()
    try:
        seen.wait_for(names, 30)
    finally:
        daemon.pipeline.stop()
        assert daemon.shutdown() == 0
    owners = {}
    for source in names:
        threads = {thread for thread, _ in seen.frames[source]}
        assert len(threads) == 1, f"{source} analysed by {threads}"
        owners[source] = threads.pop()
        numbers = [number for _, number in seen.frames[source]]
        assert numbers == sorted(set(numbers)), f"{source}: frames out of order"
    assert set(owners.values()) == {stage.name for stage in pipeline.stages} == {"analysis-0", "analysis-1"}
    assert owners["cam0"] == owners["cam2"] != owners["cam1"] == owners["cam3"]
    processed = sum(daemon.metrics.registry.get_sample_value("edgeemo_frames_processed_total", {"source": s})
                    for s in names)
    assert pipeline.frames_done == processed >= sum(len(seen.frames[s]) for s in names)


def test_workers_are_no_more_than_the_sources_and_default_to_the_usable_cpus(tmp_path):
    import os

    assert len(daemon_for(tmp_path, sources=2, workers=8).pipeline.stages) == 2
    cfg_default = load_config(None, {"sources": [{"name": f"c{k}", "url": "sample"} for k in range(64)],
                                     "voice.enabled": False, "web.enabled": False, "metrics.enabled": False,
                                     "event_log.path": str(tmp_path / "e.jsonl")})
    assert cfg_default.analysis.workers is None
    assert len(Daemon(cfg_default).pipeline.stages) == len(os.sched_getaffinity(0))


class CrashOnce:
    """An inbox that fails once, after some frames: the worker's loop itself crashes, not a step."""

    def __init__(self, inbox, after: int) -> None:
        self.inbox, self.after, self.crashed = inbox, after, False

    def get(self, timeout: float):
        item = self.inbox.get(timeout)
        self.after -= item is not None
        if self.after <= 0 and not self.crashed:
            self.crashed = True
            raise RuntimeError("worker crash (test)")
        return item


def test_a_crashing_worker_is_restarted_and_its_sources_go_on(tmp_path):
    daemon = daemon_for(tmp_path, sources=2, workers=2)
    pipeline = daemon.pipeline
    broken = pipeline.stages[1]
    broken.inbox = CrashOnce(broken.inbox, after=10)
    seen = Seen(pipeline)
    daemon.start()
    try:
        seen.wait_for(["cam1"], 5)
        deadline = time.monotonic() + WAIT_S
        while broken.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # polls the supervisor's counter: it has no event to wait on
        assert broken.inbox.crashed and broken.restarts == 1
        after_crash = len(seen.frames["cam1"])
        seen.wait_for(["cam1"], after_crash + 30)   # its source is analysed again, by the same worker
    finally:
        pipeline.stop()
        code = daemon.shutdown()
    restarts = daemon.metrics.registry.get_sample_value("edgeemo_worker_restarts_total", {"worker": "analysis-1"})
    assert restarts == 1 and code == 0 and not pipeline.failed
    assert {thread for thread, _ in seen.frames["cam1"]} == {"analysis-1"}
    assert pipeline.stages[0].restarts == 0


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5", "1000"])
def test_a_bad_workers_value_is_one_line_naming_the_key_and_exit_2(tmp_path, value):
    config = tmp_path / "edgeemo.yaml"
    config.write_text(f"analysis:\n  workers: {value}\n")
    done = subprocess.run([sys.executable, "-m", "edgeemo.cli", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "analysis.workers" in lines[0] and "Traceback" not in lines[0], lines
