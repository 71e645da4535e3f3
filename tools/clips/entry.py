"""Build the entry clip: four RAVDESS faces that enter and leave a still scene, one after another.

    python -m tools.clips.entry [--out data/entry_1280x720.mp4] [--clips DIR]

Recipe (data/ is git-ignored; the inputs are those of tools/clips/busy.py, the four RAVDESS AV
clips in ``$EDGEEMO_DATA/av_clips`` or ``../shared/data/av_clips``, sorted by name):

* a 1280x720 still scene in the clips' background grey (the median of their first frames' corners);
* clip k (0-3) appears in tile (row k // 2, column k % 2), 640x360 each, at frame ENTER[k] and leaves
  at frame LEAVE[k] (looping from its start while it is in view), so faces enter while others are
  already followed, and the scene ends empty;
* 29.97 fps, H.264 (CRF 20) with ffmpeg, else OpenCV's mp4v, as tools/clips/busy.py writes.

`--empty` writes the still scene alone instead (data/empty_640x360.mp4, 427 frames, nobody in it):
the empty, still room of the live-mode benchmark.

tools/eval/accuracy_guard.py --entry on it reports, per entry, the frames between the face's first
detection with every frame analysed in full and its first detection on the schedule.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tools.clips.busy import TILE_H, TILE_W, clip_paths, clips_dir, read_all, write_ffmpeg

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "data" / "entry_1280x720.mp4"
EMPTY_OUT = REPO / "data" / "empty_640x360.mp4"
EMPTY_FRAMES = 427
ENTER = (30, 75, 120, 165)
LEAVE = (150, 210, 240, 270)
FRAMES = 300


def background(clips: list[list[np.ndarray]]) -> np.ndarray:
    corners = np.concatenate([c[0][:20, :20].reshape(-1, 3) for c in clips] + [c[0][:20, -20:].reshape(-1, 3) for c in clips])
    return np.median(corners, axis=0).astype(np.uint8)


def entry_frames(clips: list[list[np.ndarray]]) -> Iterator[np.ndarray]:
    scene = np.empty((2 * TILE_H, 2 * TILE_W, 3), np.uint8)
    scene[:] = background(clips)
    for i in range(FRAMES):
        frame = scene.copy()
        for k, clip in enumerate(clips):
            if ENTER[k] <= i < LEAVE[k]:
                r, c = divmod(k, 2)
                frame[r * TILE_H:(r + 1) * TILE_H, c * TILE_W:(c + 1) * TILE_W] = clip[(i - ENTER[k]) % len(clip)]
        yield frame


def make_empty(clips_folder: Path | None = None, out: Path = EMPTY_OUT) -> Path:
    """The still scene with nobody in it, 640x360 (one tile), EMPTY_FRAMES frames."""
    clips = [read_all(path) for path in clip_paths(clips_folder or clips_dir())]
    scene = np.empty((TILE_H, TILE_W, 3), np.uint8)
    scene[:] = background(clips)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_ffmpeg((scene for _ in range(EMPTY_FRAMES)), out, (TILE_W, TILE_H))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--clips", type=Path, help="folder with the four RAVDESS clips")
    p.add_argument("--empty", action="store_true", help="write the empty still scene (data/empty_640x360.mp4)")
    args = p.parse_args()
    if args.empty:
        print(f"{make_empty(args.clips)}: 640x360, {EMPTY_FRAMES} frames, nobody in it")
        return 0
    clips = [read_all(path) for path in clip_paths(args.clips or clips_dir())]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_ffmpeg(entry_frames(clips), args.out)
    print(f"{args.out}: 1280x720, {FRAMES} frames; faces enter at {ENTER}, leave at {LEAVE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
