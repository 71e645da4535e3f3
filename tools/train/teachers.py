"""Soft targets from the teacher ensemble in ``../shared/data/teachers`` (read its README).

Six networks trained on FER-2013 labels and two on FER+ vote distributions left their logits for
every Training and PublicTest face and its mirror image. A student learns from their mean
probabilities softened at a temperature: the six FER-2013 teachers averaged, mixed with the two
FER+ teachers (mapped to our seven labels, contempt dropped) at ``ferplus_weight``. The mirror
view's targets go with a mirrored training face, so a flip in augmentation costs the target nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEACHERS_FILE = Path("teachers") / "fer2013_teachers.npz"
# FER+ teacher outputs are (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt);
# for each of our labels (angry, disgust, fear, happy, sad, surprise, neutral), its FER+ column.
FERPLUS_COLUMNS = [4, 5, 6, 1, 3, 2, 0]


def softmax(logits: np.ndarray, temp: float) -> np.ndarray:
    z = logits.astype(np.float64) / temp
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def ensemble_probs(fer_logits: np.ndarray, ferplus_logits: np.ndarray, temp: float,
                   ferplus_weight: float) -> np.ndarray:
    """[N, views, 7] mean probabilities at ``temp`` from [N, teachers, views, classes] logits."""
    fer = softmax(fer_logits, temp).mean(1)
    ferplus = softmax(ferplus_logits, temp)[..., FERPLUS_COLUMNS]
    ferplus = (ferplus / ferplus.sum(-1, keepdims=True)).mean(1)
    return ((1 - ferplus_weight) * fer + ferplus_weight * ferplus).astype(np.float32)


def load_targets(path: Path, fer_rows: np.ndarray, temp: float, ferplus_weight: float) -> np.ndarray:
    """Soft targets [len(fer_rows), 2 views, 7] for rows of ``fer2013.npz``.

    ``path`` is the shared teachers file (logits), or its compact form from ``compact_targets``
    (probabilities already softened at one temperature, for carrying to a leased machine).
    """
    with np.load(path) as npz:
        where = {int(row): i for i, row in enumerate(npz["fer2013_index"])}
        missing = [int(r) for r in fer_rows if int(r) not in where]
        if missing:
            raise SystemExit(f"{path}: no teacher outputs for {len(missing)} of the faces (first: row {missing[0]})")
        take = np.array([where[int(r)] for r in fer_rows])
        if "fer_logits" in npz.files:
            return ensemble_probs(npz["fer_logits"][take], npz["ferplus_logits"][take], temp, ferplus_weight)
        if abs(float(npz["temp"]) - temp) > 1e-6:
            raise SystemExit(f"{path}: targets softened at T={float(npz['temp'])}, but --kd-temp is {temp}")
        fer, ferplus = npz["fer_probs"][take].astype(np.float32), npz["ferplus_probs"][take].astype(np.float32)
    return (1 - ferplus_weight) * fer + ferplus_weight * ferplus


def compact_targets(path: Path, out: Path, fer_rows: np.ndarray, temp: float) -> None:
    """The FER-2013 and FER+ ensembles' probabilities at ``temp`` for ``fer_rows``, fp16: a tenth of the logits."""
    fer = load_targets(path, fer_rows, temp, 0.0)
    ferplus = load_targets(path, fer_rows, temp, 1.0)
    np.savez(out, fer2013_index=fer_rows.astype(np.int32), temp=np.float32(temp),
             fer_probs=fer.astype(np.float16), ferplus_probs=ferplus.astype(np.float16))
