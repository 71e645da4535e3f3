"""Faces drawn on a picture, a box and `emotion NN%` at each: `detect --annotate` and the dashboard's preview."""

from __future__ import annotations

import cv2
import numpy as np

COLOUR = (80, 220, 80)  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
MIN_SCALE = 0.25


def draw_faces(image: np.ndarray, faces: list[dict], scale: float = 1.0) -> np.ndarray:
    """Draws on `image` (BGR) in place and returns it. `faces`: records with `box` (x, y, w, h in the
    frame's pixels, times `scale` on this image), `emotion` and `confidence`."""
    for face in faces:
        x, y, w, h = (int(round(v * scale)) for v in face["box"])
        cv2.rectangle(image, (x, y), (x + w, y + h), COLOUR, 2 if min(w, h) > 40 else 1)
        label = f"{face['emotion']} {round(100 * face['confidence'])}%"
        label, origin, font_scale = label_place(label, (x, y, w, h), image.shape[:2])
        cv2.putText(image, label, origin, FONT, font_scale, COLOUR, 1, cv2.LINE_AA)
    return image


def label_place(label: str, box: tuple[int, int, int, int],
                shape: tuple[int, ...]) -> tuple[str, tuple[int, int], float]:
    """Where the label fits whole: above the box, else just inside its top; moved left from the right
    edge; smaller type on an image narrower than the label (a 48 px face), and only the emotion when
    even that is too wide. Returns (text, origin, font scale)."""
    height, width = shape[:2]
    font_scale = FONT_SCALE
    (tw, th), base = cv2.getTextSize(label, FONT, font_scale, 1)
    if tw > width - 2:
        font_scale = max(MIN_SCALE, font_scale * (width - 2) / tw)
        (tw, th), base = cv2.getTextSize(label, FONT, font_scale, 1)
        if tw > width - 2 and " " in label:
            return label_place(label.rsplit(" ", 1)[0], box, shape)
    x, y, _w, _h = box
    baseline_y = y - 4 if y - 4 - th >= 0 else y + th + 3  # above the box, else inside its top edge
    baseline_y = min(max(baseline_y, th + 1), height - base - 1)
    return label, (min(max(x, 1), max(1, width - tw - 1)), baseline_y), font_scale
