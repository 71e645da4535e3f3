"""Where the training / evaluation data live, and how to load them.

The data sets are never committed: tools take ``--data DIR`` or the ``EDGEEMO_DATA`` variable,
falling back to ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FER_USAGE = {"Training": 0, "PublicTest": 1, "PrivateTest": 2}
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def data_root(arg: str | None) -> Path:
    root = Path(arg or os.environ.get("EDGEEMO_DATA") or REPO.parent / "shared" / "data")
    if not root.is_dir():
        raise SystemExit(f"data directory {root} not found: pass --data DIR or set EDGEEMO_DATA")
    return root


def load_fer(root: Path, usage: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N,48,48] and labels uint8 [N] of one official FER-2013 split."""
    path = root / "fer2013" / "fer2013.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found (expected FER-2013 as fer2013/fer2013.npz under the data dir)")
    fer = np.load(path)
    keep = fer["usage"] == FER_USAGE[usage]
    return fer["images"][keep], fer["labels"][keep]


def load_ferplus_majority(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """FER+ Test rows (= PrivateTest) whose vote majority is one of our 7 labels, with that label.

    FER+ vote columns are neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
    unknown, NF; they are mapped into our label order.
    """
    fer = np.load(root / "fer2013" / "fer2013.npz")
    fp = np.load(root / "ferplus" / "ferplus.npz")
    index = fp["fer2013_index"]
    votes = fp["votes"].astype(np.int64)
    ferplus_to_ours = [6, 3, 5, 4, 0, 1, 2]  # neutral, happiness, surprise, sadness, anger, disgust, fear
    majority = votes.argmax(1)
    is_private = fer["usage"][index] == FER_USAGE["PrivateTest"]
    keep = is_private & (majority < 7) & (votes.max(1) > 0)
    labels = np.array(ferplus_to_ours)[majority[keep]]
    return fer["images"][index[keep]], labels.astype(np.uint8)


def load_ravdess(root: Path) -> dict:
    """RAVDESS speech (``ravdess/ravdess.npz``, see its README) as a dict of arrays.

    Keys: ``audio`` (int16, all clips concatenated, 16 kHz mono), ``offsets`` (clip i is
    ``audio[offsets[i]:offsets[i+1]]``), ``labels`` (0..7 = RAVDESS emotion code - 1), ``speakers``
    (actor 1..24), ``names``, ``intensity``, ``statement``, ``repetition``, ``label_names``, ``sr``.
    """
    path = root / "ravdess" / "ravdess.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found (expected RAVDESS speech as ravdess/ravdess.npz under the data dir)")
    with np.load(path) as npz:
        data = {key: npz[key] for key in npz.files}
    data["sr"] = int(data["sr"])
    data["label_names"] = [str(name) for name in data["label_names"]]
    return data
