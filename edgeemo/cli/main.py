"""`edgeemo run | detect | check`: the command line a user types."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from edgeemo import __version__
from edgeemo.sources.spec import SourceError
from edgeemo.config.load import describe, load_config
from edgeemo.config.redact import redact
from edgeemo.config.schema import NO_SOURCE, Config, ConfigError, SourceConfig
from edgeemo.config.secrets import with_source_passwords
from edgeemo.cli.events import add_events_parser
from edgeemo.cli.user import add_parser as add_user_parser, user_main
from edgeemo.core.memory import keep_freed_memory
from edgeemo.core.modelcard import ModelCardError
from edgeemo.core.inference import ModelError

log = logging.getLogger("edgeemo")
USER_ERRORS = (ConfigError, ModelError, ModelCardError, SourceError)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeemo", description="Real-time face emotion recognition to MQTT.")
    p.add_argument("--version", action="version", version=f"edgeemo {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    add_config_args(run)
    run.add_argument("--once", action="store_true",
                     help="analyse every frame of a file source as fast as possible, flush, exit 0 "
                          "(a batch run: no metrics endpoint, no dashboard)")

    detect = sub.add_parser("detect", help="analyse images, videos or sound files once and print faces, voice and fused results")
    detect.add_argument("paths", nargs="+", type=Path,
                        help="image files, folders of images, videos, or sound files (WAV, FLAC, ...)")
    detect.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    detect.add_argument("--json", action="store_true", help="one JSON object per image / video frame / speech segment")
    detect.add_argument("--annotate", type=Path, metavar="OUT",
                        help="write the image/video with boxes and labels (a folder when several inputs)")
    detect.add_argument("--every", type=whole_number, default=1, metavar="N", help="analyse every Nth video frame")

    check = sub.add_parser("check", help="validate config, models, sources and broker, then exit")
    add_config_args(check)
    add_events_parser(sub)
    add_user_parser(sub)
    return p


def whole_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults, see config/edgeemo.yaml)")
    p.add_argument("--source", help="camera index, /dev/videoN, rtsp/http URL, video, image, folder or 'sample'")
    p.add_argument("--mqtt-url", help="mqtt://[user@]host[:port] (password: $EDGEEMO_MQTT_PASSWORD)")
    p.add_argument("--device-id", help="device id used in topics and client id")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (0: any free port)")
    p.add_argument("--web-port", type=int, help="dashboard port (0: any free port)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


FLAGS = {"mqtt.url": "--mqtt-url", "device_id": "--device-id", "metrics.port": "--metrics-port",
         "web.port": "--web-port", "log_level": "--log-level"}  # key path -> the flag that overrides it


def config_from(args: argparse.Namespace) -> Config:
    overrides = {key: getattr(args, flag[2:].replace("-", "_"), None) for key, flag in FLAGS.items()}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    cfg = load_config(args.config, overrides, {key: FLAGS[key] for key in overrides})
    source = getattr(args, "source", None)
    if source is not None:
        try:  # validated like the YAML's url (model_copy would skip that)
            cfg.sources = [SourceConfig.model_validate(cfg.sources[0].model_dump() | {"url": source})]
        except ValidationError as exc:
            raise ConfigError(describe(exc, "--source")) from None
        with_source_passwords(cfg)
    return cfg


def setup_logging(level: str) -> None:
    from edgeemo.sources.reader import quiet_native_logs

    quiet_native_logs()
    under_systemd = "JOURNAL_STREAM" in os.environ  # journald stamps the time itself
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(fmt))


class RedactingFormatter(logging.Formatter):
    """Every log line, traceback included, with URL passwords masked: the last line of defence for
    a message (ours or a library's) that carries a camera URL."""

    def format(self, record: logging.LogRecord) -> str:
        return str(redact(super().format(record)))


def check_first_frame(source: SourceConfig) -> None:
    """A video or image file whose first frame cannot be read stops start-up (exit 2) instead of
    ending the run quietly with no events."""
    from edgeemo.sources.reader import FrameReader
    from edgeemo.sources.spec import parse_source

    spec = parse_source(source.url)
    if spec.kind not in ("video", "image"):
        return
    reader = FrameReader(spec)  # raises SourceError when it cannot open the file at all
    try:
        frame = reader.read()
    finally:
        reader.close()
    if frame is None:
        raise SourceError(f"sources.{source.name}.url: {spec.target}: no frame could be read "
                          "(empty, damaged, or not a video or image)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging("INFO")
    code = 0
    try:
        code = command(args)
        sys.stdout.flush()  # here, so that a reader gone early (`| head -1`) is caught below
        return code
    except USER_ERRORS as exc:
        log.error("%s", exc)
        return 2
    except BrokenPipeError:
        # The reader of our output stopped reading (`edgeemo detect ... | head -1`): that is its
        # choice, not an error. Point stdout at /dev/null so that the exit's own flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return code


def command(args: argparse.Namespace) -> int:
    """The command `args` names, run; a user error raises one of USER_ERRORS."""
    cfg = config_from(args)
    setup_logging(cfg.log_level)
    if args.command == "detect":
        keep_freed_memory()  # the analysis frees and allocates the same arrays on every frame and window
    if args.command == "run":
        from edgeemo.sources.spec import for_the_daemon
        from edgeemo.service.daemon import Daemon
        if any(s.url is None for s in cfg.sources):
            raise ConfigError(NO_SOURCE)  # never the bundled demo by default: a forgotten setting publishes nothing
        live = [s.url for s in cfg.sources if for_the_daemon(s.name, s.url).live]
        if args.once and live:
            raise ConfigError(f"--once reads files to their end; {redact(', '.join(live))} is a live source")
        for source in cfg.sources:
            check_first_frame(source)
        os.umask(0o077)  # every file the daemon writes (event log, journal) holds emotions: owner only
        return Daemon(cfg, lossless=args.once).run()
    if args.command == "events":
        from edgeemo.cli.events import events_main
        return events_main(cfg, args)
    if args.command == "detect":
        from edgeemo.cli.detect import detect_main
        return detect_main(cfg, args)
    if args.command == "user":
        return user_main(cfg, args)
    from edgeemo.cli.check import check_main
    return check_main(cfg)

