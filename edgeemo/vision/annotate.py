"""Faces drawn on a picture, a box and `emotion NN%` above each: `detect --annotate` and the dashboard's preview."""

from __future__ import annotations

import cv2
import numpy as np

COLOUR = (80, 220, 80)  # BGR


def draw_faces(image: np.ndarray, faces: list[dict], scale: float = 1.0) -> np.ndarray:
    """Draws on `image` (BGR) in place and returns it. `faces`: records with `box` (x, y, w, h in the
    frame's pixels, times `scale` on this image), `emotion` and `confidence`."""
    for face in faces:
        x, y, w, h = (int(round(v * scale)) for v in face["box"])
        cv2.rectangle(image, (x, y), (x + w, y + h), COLOUR, 2)
        label = f"{face['emotion']} {round(100 * face['confidence'])}%"
        cv2.putText(image, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, COLOUR, 1, cv2.LINE_AA)
    return image
