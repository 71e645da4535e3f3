"""Boxes (x, y, w, h) matched across frames: IoU between two sets, and greedy one-to-one pairing."""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box in a [T,4] and b [N,4] (x, y, w, h)."""
    a_lo, a_hi = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b_lo, b_hi = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    overlap = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None).prod(axis=2)
    union = a[:, None, 2:].prod(axis=2) + b[None, :, 2:].prod(axis=2) - overlap
    return overlap / np.maximum(union, 1e-6)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (track, face) by descending IoU above threshold, each used once."""
    pairs = []
    if iou.size == 0:
        return pairs
    if iou.size == 1:  # one face followed, one found: the common case needs no sorting
        return [(0, 0)] if iou[0, 0] >= threshold else pairs
    used_t, used_f = set(), set()
    for flat in np.argsort(iou, axis=None)[::-1]:
        t, f = divmod(int(flat), iou.shape[1])
        if iou[t, f] < threshold:
            break
        if t not in used_t and f not in used_f:
            pairs.append((t, f))
            used_t.add(t)
            used_f.add(f)
    return pairs
