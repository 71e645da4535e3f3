"""What a source string names (`sample`, a camera, a URL, a file or folder): parsed once, here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from edgeemo.config.redact import redact
from edgeemo.config.schema import STREAM_SCHEMES
from edgeemo.core.resources import sample_video

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}


class SourceError(Exception):
    """A source that cannot be opened at all (missing file, unreadable video, bad URL)."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str                  # camera | stream | video | image | folder | audio (sound only)
    target: str | int          # what cv2 opens (or the image path / folder)
    loop: bool = False         # played at its own rate, it starts again at its end (the sample)

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")


def parse_source(url: str) -> SourceSpec:
    """Tell what a source string means: `sample`, camera index, /dev/videoN, URL, file or folder."""
    if url == "sample":
        return SourceSpec("video", str(sample_video()), loop=True)  # like a camera, until stopped
    if url.isdigit():
        return SourceSpec("camera", int(url))
    if url.startswith("/dev/video"):
        return SourceSpec("camera", url)
    if urlparse(url).scheme in STREAM_SCHEMES:
        return SourceSpec("stream", url)
    path = Path(url).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if not path.is_file():
        raise SourceError(f"source {redact(url)!r}: no such file, folder, camera or URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return SourceSpec("image", str(path))
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return SourceSpec("audio", str(path))
    return SourceSpec("video", str(path))


def for_the_daemon(name: str, url: str) -> SourceSpec:
    """The source as the daemon reads it. A folder of images is refused: the daemon follows faces over
    time, and would make the different people of different pictures one track."""
    spec = parse_source(url)
    if spec.kind == "folder":
        raise SourceError(f"sources.{name}.url: {spec.target} is a folder of images: `edgeemo run` follows faces "
                          f"over time in one camera, stream or video; analyse each picture with `edgeemo detect {spec.target}`")
    return spec


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
