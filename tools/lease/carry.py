"""Move FER-2013 training data to a leased GPU machine and the trained runs back, within its limits.

The device tool carries at most 64 MiB of working tree and returns at most 8 files of 16 MiB, so:

    python -m tools.lease.carry pack-data --to carry/fer   # here: Training + PublicTest (lossless), teachers' targets
    python -m tools.lease.carry unpack-data carry/fer --to /tmp/data        # there: fer2013/fer2013.npz
    python -m tools.lease.carry pack-runs runs/gpu --to "$OUT"    # there: best weights + history, in chunks
    python -m tools.lease.carry unpack-runs DIR --to runs/gpu     # here: best.pt, history.csv, curves.png

PrivateTest never travels: it is for reporting, which happens here (tools/eval/face.py).
Weights over 4 M parameters travel as fp16 (teachers and seed rows); they come back as fp32.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import torch
from tools.common.datasets import FER_USAGE, data_root
from tools.train.face import save_curves
from tools.train.teachers import TEACHERS_FILE, compact_targets

COLUMNS = 128            # faces per mosaic row
CHUNK_BYTES = 15_000_000  # under the 16 MiB per returned file
HALF_ABOVE = 4_000_000   # parameters above which weights travel as fp16


def pack_data(data: str | None, to: Path, temp: float, with_public: bool) -> None:
    root = data_root(data)
    fer = np.load(root / "fer2013" / "fer2013.npz")
    # Without PublicTest (selection then happens here), a few checkpoints fit in the 64 MiB too.
    keep = fer["usage"] < (FER_USAGE["PrivateTest"] if with_public else FER_USAGE["PublicTest"])
    images = fer["images"][keep]
    rows = -(-len(images) // COLUMNS)
    padded = np.zeros((rows * COLUMNS, 48, 48), np.uint8)
    padded[:len(images)] = images
    mosaic = padded.reshape(rows, COLUMNS, 48, 48).transpose(0, 2, 1, 3).reshape(rows * 48, COLUMNS * 48)
    to.mkdir(parents=True, exist_ok=True)
    # Lossless WebP: 5 % smaller than PNG, which is what lets the teachers' targets travel too.
    if not cv2.imwrite(str(to / "faces.webp"), mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101]):
        raise SystemExit(f"could not write {to / 'faces.webp'}")
    np.savez(to / "meta.npz", labels=fer["labels"][keep], usage=fer["usage"][keep], rows=np.flatnonzero(keep))
    if (root / TEACHERS_FILE).is_file():
        (to / TEACHERS_FILE.parent).mkdir(exist_ok=True)
        compact_targets(root / TEACHERS_FILE, to / TEACHERS_FILE, np.flatnonzero(fer["usage"] == FER_USAGE["Training"]),
                        temp)
    size = sum(f.stat().st_size for f in to.iterdir())
    print(f"{len(images)} faces ({'Training + PublicTest' if with_public else 'Training'}) -> {to}, "
          f"{size / 1e6:.1f} MB")


def unpack_data(source: Path, to: Path) -> None:
    mosaic = cv2.imread(str(source / "faces.webp"), cv2.IMREAD_GRAYSCALE)
    if mosaic is None:
        raise SystemExit(f"{source / 'faces.webp'} is missing or not an image")
    meta = np.load(source / "meta.npz")
    rows = mosaic.shape[0] // 48
    images = mosaic.reshape(rows, 48, COLUMNS, 48).transpose(0, 2, 1, 3).reshape(-1, 48, 48)[:len(meta["labels"])]
    (to / "fer2013").mkdir(parents=True, exist_ok=True)
    # rows: each face's row in the full fer2013.npz, which the teachers' targets are indexed by
    np.savez(to / "fer2013" / "fer2013.npz", images=images, labels=meta["labels"], usage=meta["usage"],
             rows=meta["rows"])
    if (source / TEACHERS_FILE).is_file():
        (to / TEACHERS_FILE.parent).mkdir(exist_ok=True)
        shutil.copy(source / TEACHERS_FILE, to / TEACHERS_FILE)
    print(f"{len(images)} faces -> {to / 'fer2013' / 'fer2013.npz'}")


def compact(run: Path) -> dict:
    """best.pt's weights (fp16 when large) with last.pt's history: what the run's report needs."""
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    weights = best["model"]
    if sum(t.numel() for t in weights.values() if t.is_floating_point()) > HALF_ABOVE:
        weights = {k: t.half() if t.is_floating_point() else t for k, t in weights.items()}
    return {**{k: v for k, v in best.items() if k != "model"}, "model": weights, "history": last["history"]}


def pack_runs(root: Path, to: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for run in sorted(p for p in root.iterdir() if (p / "best.pt").is_file() and (p / "last.pt").is_file()):
            blob = io.BytesIO()
            torch.save(compact(run), blob)
            info = tarfile.TarInfo(f"{run.name}.pt")
            info.size = blob.tell()
            blob.seek(0)
            tar.addfile(info, blob)
            print(f"packed {run.name}: {info.size / 1e6:.1f} MB")
    data = buffer.getvalue()
    to.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(data), CHUNK_BYTES):
        (to / f"runs.tar.{i // CHUNK_BYTES:02d}").write_bytes(data[i:i + CHUNK_BYTES])
    print(f"{len(data) / 1e6:.1f} MB in {-(-len(data) // CHUNK_BYTES)} chunks -> {to}")


def unpack_runs(source: Path, to: Path) -> None:
    data = b"".join(p.read_bytes() for p in sorted(source.glob("runs.tar.*")))
    if not data:
        raise SystemExit(f"no runs.tar.* chunks in {source}")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            ckpt = torch.load(tar.extractfile(member), map_location="cpu", weights_only=False)
            ckpt["model"] = {k: t.float() if t.is_floating_point() else t for k, t in ckpt["model"].items()}
            run = to / Path(member.name).stem
            run.mkdir(parents=True, exist_ok=True)
            history = ckpt.pop("history")
            torch.save(ckpt, run / "best.pt")
            save_curves(run, history)
            print(f"{run}: {ckpt['arch']} epoch {ckpt['epoch']}/{len(history)}, "
                  f"PublicTest {ckpt['val']['val_acc']:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("pack-data")
    s.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    s.add_argument("--to", type=Path, required=True)
    s.add_argument("--temp", type=float, default=4.0, help="temperature the teachers' targets are softened at")
    s.add_argument("--no-public", dest="public", action="store_false",
                   help="Training faces only (the run then keeps its last epoch; choose on PublicTest here)")
    for name in ("unpack-data", "pack-runs", "unpack-runs"):
        s = sub.add_parser(name)
        s.add_argument("source", type=Path)
        s.add_argument("--to", type=Path, required=True)
    args = p.parse_args()
    if args.command == "pack-data":
        pack_data(args.data, args.to, args.temp, args.public)
    else:
        {"unpack-data": unpack_data, "pack-runs": pack_runs, "unpack-runs": unpack_runs}[args.command](
            args.source, args.to)


if __name__ == "__main__":
    main()
