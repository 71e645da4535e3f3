"""Build the "busy" benchmark clip: four RAVDESS faces at once, 1280x720, from the four 640x360 clips.

    python -m tools.clips.busy [--out data/busy_1280x720.mp4] [--frames 427] [--clips DIR]

Recipe (kept here so anyone can rebuild the same clip; data/ is git-ignored):

* inputs: the four RAVDESS AV clips in ``$EDGEEMO_DATA/av_clips`` or ``../shared/data/av_clips``
  (640x360, 29.97 fps, one frontal face each), sorted by file name;
* a 2x2 tiling, clip k in tile (row k // 2, column k % 2), each tile 640x360, so every face keeps
  the size it has in the bundled sample and the frame holds four of them;
* every clip loops from its start when it ends (the clips are 100-124 frames long);
* ``--frames`` output frames (default 427, the length of samples/demo.mp4) at 29.97 fps;
* encoded with ffmpeg's libx264 (CRF 20, yuv420p), like the sample, when ffmpeg is on PATH,
  so decoding costs the same per pixel as in the sample; otherwise with OpenCV's mp4v writer.

The sample tests the common case (one face, 640x360); this clip tests detection at 4x the pixels
and classification batches of four faces.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "data" / "busy_1280x720.mp4"
TILE_W, TILE_H = 640, 360
FPS = 30000 / 1001
DEFAULT_FRAMES = 427


def clips_dir() -> Path:
    """Where the RAVDESS clips live: $EDGEEMO_DATA/av_clips, else the shared data folder beside the repo."""
    base = os.environ.get("EDGEEMO_DATA")
    return Path(base) / "av_clips" if base else REPO.parent / "shared" / "data" / "av_clips"


def clip_paths(folder: Path) -> list[Path]:
    """The four RAVDESS AV clips (modality 01), in name order; not demo.mp4, which is them joined."""
    paths = sorted(folder.glob("01-*.mp4"))
    if len(paths) < 4:
        raise SystemExit(f"need 4 RAVDESS clips (01-*.mp4) in {folder}, found {len(paths)}")
    return paths[:4]


def read_all(path: Path) -> list[np.ndarray]:
    """Every frame of a clip, resized to one tile (they are 640x360 already; this only guards)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if frame.shape[:2] != (TILE_H, TILE_W):
            frame = cv2.resize(frame, (TILE_W, TILE_H), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read any frame of {path}")
    return frames


def tiled_frames(clips: list[list[np.ndarray]], count: int) -> Iterator[np.ndarray]:
    """`count` 2x2 mosaics; each clip loops on its own (they differ in length)."""
    for i in range(count):
        tiles = [clip[i % len(clip)] for clip in clips]
        yield np.vstack([np.hstack(tiles[0:2]), np.hstack(tiles[2:4])])


def write_ffmpeg(frames: Iterator[np.ndarray], out: Path, size: tuple[int, int] = (2 * TILE_W, 2 * TILE_H)) -> None:
    """H.264 like the sample, raw BGR frames (width x height = size) piped into ffmpeg."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{size[0]}x{size[1]}", "-r", "30000/1001", "-i", "-",
           "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in frames:
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed with exit code {proc.returncode}")


def write_opencv(frames: Iterator[np.ndarray], out: Path) -> None:
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (2 * TILE_W, 2 * TILE_H))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {out}")
    for frame in frames:
        writer.write(frame)
    writer.release()


def make_busy_clip(out: Path = DEFAULT_OUT, frames: int = DEFAULT_FRAMES, folder: Path | None = None,
                   use_ffmpeg: bool = True) -> Path:
    """Write the clip (see the module docstring for the recipe) and return its path."""
    clips = [read_all(p) for p in clip_paths(folder or clips_dir())]
    out.parent.mkdir(parents=True, exist_ok=True)
    mosaics = tiled_frames(clips, frames)
    if use_ffmpeg and shutil.which("ffmpeg"):
        write_ffmpeg(mosaics, out)
    else:
        write_opencv(mosaics, out)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="output length in frames (29.97 fps)")
    p.add_argument("--clips", type=Path, help="folder with the four RAVDESS clips (default: %(default)s)")
    p.add_argument("--opencv", action="store_true", help="encode with OpenCV's mp4v even when ffmpeg exists")
    args = p.parse_args()
    out = make_busy_clip(args.out, args.frames, args.clips, use_ffmpeg=not args.opencv)
    cap = cv2.VideoCapture(str(out))
    size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    print(f"{out}: {size}, {int(cap.get(cv2.CAP_PROP_FRAME_COUNT))} frames, {cap.get(cv2.CAP_PROP_FPS):.2f} fps")
    cap.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
