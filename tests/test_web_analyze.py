"""POST /api/analyze against the real server, compared with `edgeemo detect --json` run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from testkit.webclient import ADMIN_PW, VIEWER_PW, Client, sample_clip, start_server

FIXTURES = Path(__file__).parent / "fixtures"


def detect_json(path: Path) -> tuple[list[dict], list[dict]]:
    """(frames, segments) of `edgeemo detect --json PATH`, without the path each line names."""
    result = subprocess.run([sys.executable, "-m", "edgeemo.cli", "detect", str(path), "--json"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    for line in lines:
        assert line.pop("path") == str(path)
    return [x for x in lines if "faces" in x], [x for x in lines if "voice" in x]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The sample's first 4 s: one face, and the first utterance (0-3.3 s) with its sound."""
    return sample_clip(tmp_path_factory.mktemp("clip"))


def serve(tmp: Path, **analyze):
    return start_server(tmp, overrides={f"web.analyze.{k}": v for k, v in analyze.items()})


@pytest.fixture()
def web(tmp_path):
    server, journal = serve(tmp_path)
    yield server, journal
    server.stop()
    journal.close()


def viewer(server) -> Client:
    c = Client(server.port)
    assert c.login("viewer", VIEWER_PW).status == 200
    return c


def uploads_left() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("edgeemo-upload-*"))


def test_an_image_reads_as_detect_reads_it(web):
    server, journal = web
    image = FIXTURES / "two_faces.jpg"
    frames, _ = detect_json(image)
    reply = viewer(server).upload(image.read_bytes(), "two_faces.jpg", "image/jpeg")
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer == {"kind": "image", "frames": frames, "segments": []}
    assert len(answer["frames"][0]["faces"]) == 2
    assert journal.query(limit=10) == []  # analysed and forgotten: nothing journalled


def test_a_video_reads_as_detect_reads_it(web, clip):
    server, journal = web
    frames, segments = detect_json(clip)
    reply = viewer(server).upload(clip.read_bytes(), "clip.mp4", "video/mp4")
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["kind"] == "video" and len(answer["frames"]) > 100
    assert answer["frames"] == frames
    assert answer["segments"] == segments and len(segments) == 1 and segments[0]["fused"] is not None
    assert journal.query(limit=10) == [] and not uploads_left()


def test_a_sound_file_gives_its_speech_segments(web, clip, tmp_path):
    server, _ = web
    wav = tmp_path / "speech.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(clip), "-vn", "-ac", "1", str(wav)], check=True)
    _, segments = detect_json(wav)
    reply = viewer(server).upload(wav.read_bytes(), "speech.wav", "audio/wav")
    assert reply.status == 200, reply.body
    assert reply.json() == {"kind": "sound", "frames": [], "segments": segments} and len(segments) == 1


def test_without_a_session_or_csrf_token_nothing_is_analysed(web):
    server, _ = web
    data = (FIXTURES / "two_faces.jpg").read_bytes()
    assert Client(server.port).upload(data, "a.jpg", "image/jpeg").status == 401
    reply = viewer(server).upload(data, "a.jpg", "image/jpeg", csrf=False)
    assert reply.status == 403 and "X-CSRF-Token" in reply.json()["error"]


def test_bad_uploads_get_a_clear_answer(web):
    server, _ = web
    c = viewer(server)
    reply = c.upload(b"this is not a picture", "holiday.jpg", "image/jpeg")
    assert reply.status == 422 and "holiday.jpg: not an image" in reply.json()["error"]
    reply = c.upload(b"\x00" * 5000, "film.mp4", "video/mp4")
    assert reply.status == 422 and "not a video" in reply.json()["error"]
    assert c.upload(b"", "empty.png", "image/png").status == 422
    reply = c.upload(b"x", "a.jpg", field="picture")
    assert reply.status == 400 and "'file'" in reply.json()["error"]
    assert not uploads_left()


def test_limits_from_the_config_413_and_422(tmp_path, clip):
    server, journal = serve(tmp_path, max_bytes=20_000, max_seconds=2)
    try:
        c = viewer(server)
        reply = c.upload((FIXTURES / "two_faces.jpg").read_bytes(), "big.jpg", "image/jpeg")
        assert reply.status == 413 and "web.analyze.max_bytes (20000 bytes)" in reply.json()["error"]
        server.analyzer.limits.max_bytes = 10_000_000
        reply = c.upload(clip.read_bytes(), "clip.mp4", "video/mp4")
        assert reply.status == 422 and "more than web.analyze.max_seconds (2 s)" in reply.json()["error"]
        assert not uploads_left()
    finally:
        server.stop()
        journal.close()


def streamed(clip: Path, folder: Path, *args: str) -> Path:
    """`clip` remuxed to Matroska through a pipe, as a live recorder writes it: no duration in its header."""
    out = folder / f"streamed{len(args)}.mkv"
    with out.open("wb") as f:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(clip), *args, "-c", "copy", "-f", "matroska",
                        "pipe:1"], stdout=f, check=True)
    return out


def test_a_file_without_a_duration_is_stopped_at_the_limit(tmp_path, clip):
    from edgeemo.sources.media import media_duration

    video, sound = streamed(clip, tmp_path), streamed(clip, tmp_path, "-vn")
    assert media_duration(str(video)) == 0 and media_duration(str(sound)) == 0  # the header says nothing
    server, journal = serve(tmp_path, max_seconds=2)
    try:
        c = viewer(server)
        for data, name, kind in ((video.read_bytes(), "live.mkv", "video/x-matroska"),
                                 (sound.read_bytes(), "speech", "audio/x-matroska")):
            reply = c.upload(data, name, kind)
            assert reply.status == 422, (name, reply.status)
            assert reply.json()["error"] == "the file lasts more than web.analyze.max_seconds (2 s)"
        assert not uploads_left()
    finally:
        server.stop()
        journal.close()


def test_one_at_a_time_the_next_gets_429(tmp_path, clip):
    server, journal = serve(tmp_path, queue=0)
    try:
        first: list = []
        worker = threading.Thread(target=lambda: first.append(viewer(server).upload(clip.read_bytes(), "clip.mp4")))
        worker.start()
        deadline = time.monotonic() + 30
        while not uploads_left() and time.monotonic() < deadline:  # the first is being analysed
            time.sleep(0.01)
        [held] = uploads_left()
        assert held.stat().st_mode & 0o777 == 0o600  # private while it exists
        busy = viewer(server).upload((FIXTURES / "two_faces.jpg").read_bytes(), "a.jpg", "image/jpeg")
        assert busy.status == 429 and busy.headers["retry-after"] and "busy" in busy.json()["error"]
        worker.join(120)
        assert first[0].status == 200 and not held.exists()
        again = viewer(server).upload((FIXTURES / "two_faces.jpg").read_bytes(), "a.jpg", "image/jpeg")
        assert again.status == 200  # free again
    finally:
        server.stop()
        journal.close()


def test_admins_may_analyse_too(web):
    server, _ = web
    c = Client(server.port)
    assert c.login("admin", ADMIN_PW).status == 200
    assert c.upload((FIXTURES / "no_face.png").read_bytes(), "n.png", "image/png").json()["frames"][0]["faces"] == []
