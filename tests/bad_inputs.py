"""A generated corpus of bad inputs for the real CLI: configs, credentials, TLS files, ports, models,
model cards and media of every kind (empty, random bytes, truncated, huge, odd formats).

`build(folder, busy_port)` writes the files under `folder` and returns the cases; tests/test_bad_inputs.py
runs each as `python -m edgeemo.cli ...`. Each case names the exit code it must end with (2: bad input;
1: `check` found a part that fails; 0: media that is partly readable, analysed with a warning) and a
text the output must contain, which names the bad key, file or value.
"""

from __future__ import annotations

import json
import re
import struct
import wave
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeemo.core.resources import models_dir, sample_video

FIXTURES = Path(__file__).parent / "fixtures"
IMAGE = FIXTURES / "no_face.png"


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str                  # must appear in stdout + stderr
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)
    forbid: tuple[str, ...] = ()  # must not appear (a secret given in the input)


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming width x height, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info)) + info + b"\0" * 16


def write_wav(path: Path, seconds: float = 1.0) -> Path:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    samples = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


class Corpus:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cases: list[Case] = []
        self._n = 0

    def file(self, name: str, content: bytes | str) -> Path:
        self._n += 1
        path = self.folder / f"{self._n:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def add(self, name: str, args: list, expect: str, code: int = 2, **kw: object) -> None:
        self.cases.append(Case(name, [str(a) for a in args], expect, code, **kw))

    def config(self, name: str, text: str, expect: str, command: str = "check", code: int = 2, **kw: object) -> Path:
        """A YAML case: `check` fails on a config error before any other check."""
        path = self.file(f"{name}.yaml", text)
        args = {"check": ["check", "--config", path],
                "run": ["run", "--once", "--config", path, "--source", IMAGE, "--metrics-port", "0"],
                # not a batch run: the metrics endpoint is served (a batch run serves none)
                "live": ["run", "--config", path, "--source", IMAGE, "--web-port", "0"]}[command]
        self.add(name, args, expect.format(path=path), code, **kw)
        return path


def yaml_cases(c: Corpus) -> None:
    dups = {
        "dup-top": ("device_id: a\ndevice_id: b\n", "{path}: line 2, column 1: duplicate key 'device_id' (first on line 1)"),
        "dup-nested": ("mqtt:\n  qos: 1\n  qos: 2\n", "duplicate key 'qos' (first on line 2)"),
        "dup-section": ("metrics:\n  port: 1\nmetrics:\n  port: 2\n", "duplicate key 'metrics'"),
        "dup-in-source": ("sources:\n  - url: sample\n    url: /dev/video0\n", "duplicate key 'url' (first on line 2)"),
        "dup-tls": ("mqtt:\n  tls:\n    insecure: false\n    insecure: true\n", "duplicate key 'insecure'"),
    }
    for name, (text, expect) in dups.items():
        c.config(name, text, expect)
    sections = ["detector", "classifier", "tracker", "voice", "microphone", "fusion", "mqtt", "journal",
                "event_log", "metrics"]
    for section in sections:
        c.config(f"unknown-{section}", f"{section}:\n  typo_key: 1\n", f"{section}.typo_key: unknown key; allowed here:")
    c.config("unknown-top", "colour: red\n", "colour: unknown key")
    c.config("unknown-source", "sources:\n  - urll: sample\n", "sources.0.urll: unknown key")
    c.config("unknown-tls", "mqtt:\n  tls:\n    cafile: x\n", "mqtt.tls.cafile: unknown key")
    wrong = [
        ("detector", "threads", "many"), ("detector", "input_width", "100"), ("detector", "score_threshold", "2"),
        ("detector", "backend", "cuda"), ("detector", "max_faces", "0"), ("classifier", "flip_margin", "5"),
        ("classifier", "threads", "0"), ("tracker", "iou_threshold", "x"), ("tracker", "min_hits", "0"),
        ("tracker", "max_missed_s", "-1"), ("voice", "enabled", "maybe"), ("voice", "window_s", "100"),
        ("microphone", "sample_rate", "100"), ("microphone", "channels", "0"), ("fusion", "face_weight", "-1"),
        ("mqtt", "qos", "3"), ("mqtt", "keepalive_s", "1"), ("mqtt", "topic_prefix", "'a/#'"),
        ("mqtt", "client_id", "'a b'"), ("metrics", "enabled", "'often'"), ("metrics", "port", "http"),
        ("metrics", "port", "-1"), ("metrics", "port", "70000"), ("event_log", "max_bytes", "10"),
        ("event_log", "backups", "-1"), ("journal", "retention_days", "0"), ("journal", "sync_interval_s", "100"),
    ]
    for section, key, value in wrong:
        c.config(f"type-{section}-{key}-{value}", f"{section}:\n  {key}: {value}\n", f"{section}.{key}: ")
    c.config("type-tls-enabled", "mqtt:\n  tls:\n    enabled: yesplease\n", "mqtt.tls.enabled: ")
    c.config("fusion-both-zero", "fusion:\n  face_weight: 0\n  voice_weight: 0\n", "cannot both be 0")
    c.config("voice-hop-over-window", "voice:\n  window_s: 2\n  hop_s: 3\n", "need hop_s (3.0)")
    for key, value in [("device_id", "'a b'"), ("log_level", "LOUD"), ("models_dir", "[1, 2]"), ("sources", "cam"),
                       ("sources", "[]"), ("sources", "[cam]"), ("mqtt", "[1]"), ("device_id", "{a: 1}")]:
        c.config(f"type-top-{key}-{value}", f"{key}: {value}\n", f"{key}")
    for key, value in [("name", "'a b'"), ("max_fps", "0"), ("reconnect_initial_s", "-1"), ("audio", "''"),
                       ("stall_timeout_s", "never")]:
        c.config(f"type-source-{key}", f"sources:\n  - url: sample\n    {key}: {value}\n", f"sources.0.{key}")
    c.config("source-names-twice", "sources:\n  - name: a\n  - name: a\n", "source names must be unique")
    # YAML that is not a mapping of keys, or not YAML at all
    c.config("top-list", "- a\n- b\n", "the top level must be a mapping of keys, got list")
    c.config("top-scalar", "hello\n", "the top level must be a mapping of keys, got str")
    c.config("yaml-tab", "mqtt:\n\tqos: 1\n", "line 2, column 1: not valid YAML")
    c.config("yaml-unclosed", "device_id: [oops\n", "not valid YAML")
    c.config("yaml-indent", "mqtt:\n  qos: 1\n   url: x\n", "line 3, column 7: not valid YAML")
    c.config("yaml-python-tag", "device_id: !!python/object/apply:os.system [echo hi]\n", "not valid YAML: could not determine a constructor")
    c.config("yaml-nested-1000-mappings", "mqtt:\n" + "".join("  " * (i + 1) + "a:\n" for i in range(1000)),
             "not valid YAML: nested more than 64 levels deep")
    c.config("yaml-nested-1000-lists", "device_id: " + "[" * 1000 + "]" * 1000 + "\n",
             "line 1, column 75: not valid YAML: nested more than 64 levels deep")
    c.config("yaml-nested-1000-run", "sources:\n  - url: " + "{a: " * 1000 + "}" * 1000 + "\n",
             "nested more than 64 levels deep", command="run")
    c.add("yaml-random-bytes", ["check", "--config", c.file("random.yaml", random_bytes(400, 1))], "random.yaml: ")
    c.add("yaml-latin1", ["check", "--config", c.file("latin1.yaml", "device_id: caf\xe9\n".encode("latin-1"))],
          "latin1.yaml: not UTF-8 text")
    c.add("config-missing", ["check", "--config", c.folder / "nope.yaml"], "cannot read config file")
    c.add("config-is-folder", ["check", "--config", c.folder], "Is a directory")


def url_and_port_cases(c: Corpus, busy_port: int) -> None:
    for url, expect in [("http://broker", "mqtt.url: "), ("mqtt://", "mqtt.url: "), ("mqtt://h:99999", "port must be"),
                        ("mqtt://h:port", "port must be"), ("mqtt://h:0", "port must be"), ("ftp://h", "mqtt.url: ")]:
        c.config(f"mqtt-url-{url}", f"mqtt:\n  url: '{url}'\n", expect)
    c.config("mqtt-url-password", "mqtt:\n  url: mqtt://u:Pw-In-Url-991@h\n", "must not contain a password",
             forbid=("Pw-In-Url-991",))
    c.add("override-mqtt-url", ["check", "--mqtt-url", "tcp://x"], "--mqtt-url: mqtt.url: ")
    c.add("override-metrics-port", ["check", "--metrics-port", "70000"], "--metrics-port: metrics.port: ")
    c.add("override-metrics-port-text", ["check", "--metrics-port", "abc"], "--metrics-port: invalid int value: 'abc'")
    c.add("override-device-id", ["check", "--device-id", "a/b"], "--device-id: device_id: ")
    c.add("override-log-level", ["check", "--log-level", "LOUD"], "--log-level: invalid choice")
    for i, (url, expect) in enumerate([("rtsp://", "a stream URL needs a host"),
                                       ("rtsp://cam:99999/s", "port must be a number from 1 to 65535"),
                                       ("http://:80/x", "a stream URL needs a host"),
                                       ("rtsp://viewer:Cam-Pw-5521@cam:99999/s", "port must be")]):
        c.config(f"source-url-{i}", f"sources:\n  - url: '{url}'\n", "sources.0.url: Value error, " + expect,
                 forbid=("Cam-Pw-5521",))
    for url in ["/nonexistent/video.mp4", "ftp://cam/x", "~/nope.mkv"]:
        c.add(f"source-missing-{url}", ["run", "--once", "--source", url, "--metrics-port", "0"], "no such file")
    c.add("override-source-no-host", ["check", "--source", "rtsp://"], "--source: url: Value error, a stream URL needs a host")
    c.add("once-live", ["run", "--once", "--source", "rtsp://cam/s"], "is a live source")
    c.add("metrics-port-busy", ["run", "--source", IMAGE, "--metrics-port", busy_port, "--web-port", "0"],
          f"cannot serve metrics on 127.0.0.1:{busy_port}: Address already in use")
    c.config("metrics-host-bad", "metrics:\n  host: no.such.host.invalid\n", "cannot serve metrics on no.such.host.invalid",
             command="live")
    c.add("check-web-port-busy", ["check", "--web-port", busy_port, "--metrics-port", "0", "--source", IMAGE],
          f"FAIL  dashboard: cannot bind 127.0.0.1:{busy_port}: Address already in use (web.host, web.port)", code=1)
    c.add("override-web-port", ["check", "--web-port", "70000"], "--web-port: web.port: ")
    c.add("check-metrics-port-busy", ["check", "--metrics-port", busy_port, "--config",
                                      c.file("novoice.yaml", "voice:\n  enabled: false\n")],
          f"FAIL  metrics: cannot bind 127.0.0.1:{busy_port}: Address already in use (metrics.host, metrics.port)", code=1)


def file_cases(c: Corpus) -> None:
    """TLS files, password files and the event log path: stop `run` at start-up (exit 2)."""
    garbage = c.file("garbage.pem", "not a certificate\n")
    missing = c.folder / "missing.pem"
    tls = "mqtt:\n  url: mqtts://u@127.0.0.1:1\n  tls:\n"
    for name, body, expect in [
        ("ca-missing", f"    ca_file: {missing}\n", f"mqtt.tls.ca_file: cannot read {missing}: No such file"),
        ("ca-garbage", f"    ca_file: {garbage}\n", f"mqtt.tls.ca_file: {garbage} is not a PEM certificate"),
        ("ca-folder", f"    ca_file: {c.folder}\n", "mqtt.tls.ca_file: "),
        ("ca-random", f"    ca_file: {c.file('random.pem', random_bytes(300, 2))}\n", "mqtt.tls.ca_file: "),
        ("cert-missing", f"    cert_file: {missing}\n", f"mqtt.tls.cert_file: cannot read {missing}"),
        ("cert-garbage", f"    cert_file: {garbage}\n", f"cannot load the client certificate {garbage}"),
        ("key-missing", f"    cert_file: {garbage}\n    key_file: {missing}\n", f"mqtt.tls.key_file: cannot read {missing}"),
        ("key-without-cert", f"    key_file: {garbage}\n", "mqtt.tls.key_file is set but mqtt.tls.cert_file is not"),
    ]:
        c.config(f"tls-{name}", tls + body, expect, command="run")
    c.config("check-tls-ca-missing", tls + f"    ca_file: {missing}\nvoice:\n  enabled: false\n",
             f"FAIL  mqtt: mqtt.tls.ca_file: cannot read {missing}", code=1)
    empty = c.file("empty-password", "\n")
    latin = c.file("latin1-password", "caf\xe9".encode("latin-1") + b"\xff\n")
    mqtt = "mqtt:\n  url: mqtt://u@127.0.0.1:1\n  password_file: {}\n"
    for name, path, expect in [("missing", missing, f"mqtt.password_file: cannot read {missing}: No such file"),
                               ("folder", c.folder, "mqtt.password_file: cannot read"),
                               ("empty", empty, f"mqtt.password_file: {empty} is empty"),
                               ("not-text", latin, f"mqtt.password_file: cannot read {latin}")]:
        c.config(f"mqtt-password-file-{name}", mqtt.format(path), expect, command="run")
    source = "sources:\n  - url: rtsp://viewer@cam/s\n    password_file: {}\n"
    for name, path, expect in [("missing", missing, f"sources.default.password_file: cannot read {missing}"),
                               ("folder", c.folder, "sources.default.password_file: cannot read"),
                               ("empty", empty, f"sources.default.password_file: {empty} is empty")]:
        c.config(f"source-password-file-{name}", source.format(path), expect)
    c.config("source-password-file-no-user", f"sources:\n  - url: rtsp://cam/s\n    password_file: {empty}\n",
             "sources.default.password_file: needs a url with a user name")
    blocker = c.file("a-file", "")
    c.config("event-log-under-a-file", f"event_log:\n  path: {blocker}/events.jsonl\n",
             f"event_log.path: cannot write {blocker}/events.jsonl", command="run")
    c.config("check-journal-under-a-file", f"journal:\n  path: {blocker}/journal.db\n",
             f"FAIL  journal: journal.path: cannot create {blocker}/journal.db: {blocker} is not a writable folder", code=1)
    c.config("check-journal-not-sqlite", f"journal:\n  path: {c.file('journal.db', random_bytes(3000, 42))}\n",
             "is not a database (file is not a database): the daemon will move it aside", code=1)
    c.config("event-log-is-folder", f"event_log:\n  path: {c.folder}\n", f"event_log.path: cannot write {c.folder}",
             command="run")


def model_cases(c: Corpus) -> None:
    """Detector models and model cards, through `detect` on an image (exit 2 naming the file)."""
    shipped = models_dir()
    onnx = (shipped / "yunet_s_dynamic.onnx").read_bytes()
    card = json.loads((shipped / "edgeemo-face-int8.json").read_text())
    card["file"] = str(shipped / card["file"])

    def detect_with(name: str, yaml_text: str, expect: str) -> None:
        config = c.file(f"{name}.yaml", yaml_text)
        c.add(f"model-{name}", ["detect", IMAGE, "--config", config], expect)

    for name, content in [("empty", b""), ("random", random_bytes(5000, 3)), ("cut-1k", onnx[:1000]),
                          ("cut-half", onnx[:len(onnx) // 2]), ("json", b'{"not": "onnx"}')]:
        path = c.file(f"detector-{name}.onnx", content)
        detect_with(f"detector-{name}", f"detector:\n  model: {path}\n", f"cannot load model {path}")
    detect_with("detector-missing", f"detector:\n  model: {c.folder / 'none.onnx'}\n", "none.onnx not found")

    def card_case(name: str, content: bytes | str | dict, expect: str) -> None:
        data = json.dumps(content) if isinstance(content, dict) else content
        path = c.file(f"card-{name}.json", data)
        detect_with(f"card-{name}", f"classifier:\n  model: {path}\n", expect.format(path=path))

    def changed(**changes: object) -> dict:
        out = json.loads(json.dumps(card))
        for dotted, value in changes.items():
            node = out
            *parents, last = dotted.split("__")
            for part in parents:
                node = node[part]
            if value is None:
                del node[last]
            else:
                node[last] = value
        return out

    card_case("empty", b"", "model card {path} is not valid JSON")
    card_case("random", random_bytes(300, 4), "model card {path}")
    card_case("truncated", json.dumps(card)[:200], "model card {path} is not valid JSON")
    card_case("list", "[1, 2]", "model card {path}: the top level must be a JSON object")
    card_case("string", '"card"', "model card {path}: the top level must be a JSON object")
    card_case("no-input", changed(input=None), "model card {path}: missing key 'input'")
    card_case("no-crop", changed(crop=None), "model card {path}: missing key 'crop'")
    card_case("no-file", changed(file=None), "model card {path}: missing key 'file'")
    card_case("labels", changed(labels=["a", "b"]), "labels must be a permutation")
    card_case("size", changed(input__size=[48]), "input.size must be [H, W]")
    card_case("size-zero", changed(input__size=[0, 48]), "input.size must be two whole numbers >= 8")
    card_case("channels", changed(input__channels=2), "input.channels=2 does not fit")
    card_case("std-zero", changed(input__std=[0.0]), "input.std")
    card_case("flip", changed(flip_margin=2), "flip_margin must be between 0 and 1")
    card_case("output", changed(output="softmax"), "output must be 'logits' or 'probs'")
    card_case("crop-center-outside", changed(crop__eye_center=[1.5, 0.4]),
              "crop.eye_center must lie inside the crop (0..1, 0..1)")
    card_case("crop-center-negative", changed(crop__eye_center=[0.5, -0.2]), "crop.eye_center must lie inside")
    card_case("crop-distance-zero", changed(crop__eye_distance=0), "crop.eye_distance must be between 0 and 1")
    card_case("crop-distance-huge", changed(crop__eye_distance=3), "crop.eye_distance must be between 0 and 1")
    card_case("crop-center-text", changed(crop__eye_center="middle"), "model card {path}: ")
    card_case("onnx-missing", changed(file=str(c.folder / "gone.onnx")), "gone.onnx")
    card_case("onnx-random", changed(file=str(c.file("random-model.onnx", random_bytes(2000, 5)))), "cannot load model")
    # Models that are not what the key or card says (each checked against its contract at load).
    expression = shipped / card["file"].rsplit("/", 1)[-1]
    detect_with("detector-is-the-expression-model", f"detector:\n  model: {expression}\n",
                f"detector.model: {expression} is not a YuNet face detector")
    card_case("onnx-is-the-detector", changed(file=str(shipped / "yunet_s_dynamic.onnx")),
              "yunet_s_dynamic.onnx gives 12 outputs where the card expects one of 7 classes: is it the face detector?")
    card_case("channels-not-the-model's", changed(input__channels=3, input__color="bgr", input__mean=[0.0] * 3,
                                                  input__std=[1.0] * 3),
              "does not take what its card says: input input [N, 3, 48, 48] (bgr)")
    card_case("size-not-the-model's", changed(input__size=[64, 64]), "does not take what its card says")
    card_case("input-name-not-the-model's", changed(input__name="pixels"), "does not take what its card says: input pixels")
    card_case("nested-1000", "{\"a\": " * 1000 + "1" + "}" * 1000, "model card {path}: nested too deeply")
    wav = write_wav(c.folder / "tone.wav")
    for name, content, expect in [("missing", None, "cannot read model card"), ("random", random_bytes(200, 6), "model card"),
                                  ("list", "[]", "the top level must be a JSON object")]:
        path = c.folder / "none-voice.json" if content is None else c.file(f"voice-{name}.json", content)
        config = c.file(f"voice-{name}.yaml", f"voice:\n  model: {path}\n")
        c.add(f"voice-card-{name}", ["detect", wav, "--config", config], expect)
    voice = json.loads((shipped / "edgeemo-voice-int8.json").read_text())
    for name, model, expect in [("face-model", expression, "does not take what its card says: [N, frames, 40]"),
                                ("detector", shipped / "yunet_s_dynamic.onnx", "does not take what its card says")]:
        path = c.file(f"voice-onnx-is-the-{name}.json", json.dumps(voice | {"file": str(model)}))
        config = c.file(f"voice-onnx-is-the-{name}.yaml", f"voice:\n  model: {path}\n")
        c.add(f"voice-card-onnx-is-the-{name}", ["detect", wav, "--config", config], f"voice.model (card {voice['name']}): ")


def media_cases(c: Corpus) -> None:
    """Media for `detect` (and `run --once`): unreadable ones are named, and the exit code is 2."""
    demo = sample_video().read_bytes()
    png = IMAGE.read_bytes()
    for suffix in [".jpg", ".png", ".bmp", ".webp", ".tif", ".mp4", ".mkv", ".avi", ".wav", ".flac"]:
        path = c.file(f"empty{suffix}", b"")
        c.add(f"detect-empty{suffix}", ["detect", path], path.name)
    for i, suffix in enumerate([".jpg", ".png", ".bmp", ".webp", ".tiff", ".mp4", ".mov", ".mkv", ".webm", ".wav",
                                ".mp3", ".ogg"]):
        path = c.file(f"random{suffix}", random_bytes(20000, 10 + i))
        c.add(f"detect-random{suffix}", ["detect", path], path.name)
    for name, content in [("huge.png", png_header(100000, 100000)), ("huge.bmp", bmp_header(60000, 60000)),
                          ("half.png", png[:len(png) // 2]), ("text.jpg", "just some text\n"),
                          ("jpeg-magic-only.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100)]:
        path = c.file(name, content)
        c.add(f"detect-{name}", ["detect", path], f"{path.name}: not a readable image")
    text = c.file("notes.txt", "not a video\n")
    c.add("detect-text-file", ["detect", text], text.name)
    header_only = c.file("header-only.mp4", demo[:demo.find(b"mdat") + 4])
    c.add("detect-mp4-header-only", ["detect", header_only, "--every", "5"], header_only.name)
    empty_folder = c.folder / "no-images"
    empty_folder.mkdir()
    (empty_folder / "readme.txt").write_text("no images here\n")
    c.add("detect-folder-without-images", ["detect", empty_folder], "no images found")
    mixed = c.folder / "mixed"
    mixed.mkdir()
    (mixed / "a-good.png").write_bytes(png)
    (mixed / "b-broken.png").write_bytes(random_bytes(500, 30))
    c.add("run-folder", ["run", "--source", mixed, "--metrics-port", "0", "--web-port", "0"],
          f"sources.default.url: {mixed} is a folder of images: `edgeemo run` follows faces over time")
    c.add("run-once-folder", ["run", "--once", "--source", mixed], f"`edgeemo detect {mixed}`")
    c.add("check-folder", ["check", "--source", mixed, "--metrics-port", "0", "--web-port", "0"],
          f"FAIL  source default: sources.default.url: {mixed} is a folder of images", code=1)
    c.add("detect-folder-with-a-broken-image", ["detect", mixed], "b-broken.png: not a readable image")
    c.add("detect-good-and-broken", ["detect", IMAGE, c.file("broken.jpg", b"\xff\xd8garbage")],
          "broken.jpg: not a readable image")
    c.add("detect-missing", ["detect", c.folder / "nope.jpg"], "nope.jpg': no such file")
    c.add("detect-stream-url", ["detect", "rtsp://viewer:Detect-Pw-31@cam/s"], "detect reads files",
          forbid=("Detect-Pw-31",))
    c.add("detect-camera-index", ["detect", "0"], "0: detect reads files")
    c.add("detect-annotate-no-image-suffix", ["detect", IMAGE, "--annotate", c.folder / "annotated"],
          "--annotate " + str(c.folder / "annotated") + ": cannot write an image there")
    c.add("detect-annotate-under-a-file", ["detect", IMAGE, "--annotate", c.file("plain.txt", b"x") / "o.png"],
          "plain.txt")
    c.add("detect-every-zero", ["detect", IMAGE, "--every", "0"], "--every: must be a whole number >= 1")
    c.add("detect-every-text", ["detect", IMAGE, "--every", "x"], "--every: ")
    # Partly readable: analysed as far as it goes, with a warning naming the file; exit 0.
    cut = c.file("truncated.mp4", demo[:len(demo) * 2 // 5])
    c.add("detect-truncated-mp4", ["detect", cut, "--every", "15"], f"{cut.name}: the video ends after", code=0)
    for name, content in [("empty.mp4", b""), ("random.mp4", random_bytes(20000, 40)), ("header-only.mp4", demo[:17114])]:
        path = c.file(f"run-{name}", content)
        c.add(f"run-once-{name}", ["run", "--once", "--source", path, "--metrics-port", "0"], path.name)
    broken_image = c.file("run-broken.png", random_bytes(800, 41))
    c.add("run-once-broken-image", ["run", "--once", "--source", broken_image, "--metrics-port", "0"],
          f"{broken_image.name}: not a readable image")


def build(folder: Path, busy_port: int) -> list[Case]:
    corpus = Corpus(folder)
    yaml_cases(corpus)
    url_and_port_cases(corpus, busy_port)
    file_cases(corpus)
    model_cases(corpus)
    media_cases(corpus)
    return corpus.cases


if __name__ == "__main__":  # list the corpus: python tests/bad_inputs.py
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cases = build(Path(tmp), 9)
        for case in cases:
            print(case.code, case.name, " ".join(case.args[:2]))
        print(f"{len(cases)} cases")
