"""A cheap motion mask, as Frigate computes it: a small grey copy of the frame against a running average.

The frame is shrunk to `height` rows, made grey and blurred; pixels that differ from the running
average by more than `threshold` grey levels are motion, dilated a little. When more than
`lighting_fraction` of the picture changes at once (a lamp switched on, the camera's exposure), that
is a lighting jump, not motion: the average restarts from the new frame and nothing is reported.
After a keyframe has looked at the whole picture, `recalibrate` restarts it too, so the same change
(a scene cut, a chair moved) does not call for keyframe after keyframe while the average catches up.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeemo.config.schema import MotionConfig
from edgeemo.core.types import Image
from edgeemo.vision.pixels import small_grey

KERNEL = np.ones((3, 3), np.uint8)


class MotionDetector:
    """Motion of one source's frames; call `update` with every frame, in order."""

    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self.background: np.ndarray | None = None
        self.scale = 1.0               # mask pixels per frame pixel
        self.lighting_jumps = 0
        self._grey: np.ndarray | None = None

    def update(self, image: Image) -> np.ndarray:
        """uint8 mask (255 = moved) of the small copy; all zero on the first frame and after a lighting jump."""
        h, w = image.shape[:2]
        self.scale = self.cfg.height / h
        # Linear shrinking samples rather than averages (INTER_AREA at a fractional ratio has no fast
        # path in OpenCV); the blur then evens out the noise that sampling lets through.
        small = small_grey(image, max(1, round(w * self.scale)), self.cfg.height)
        grey = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        self._grey = grey
        if self.background is None or self.background.shape != grey.shape:
            self.background = grey
            return np.zeros(grey.shape, np.uint8)
        diff = cv2.absdiff(grey, self.background)
        cv2.accumulateWeighted(grey, self.background, self.cfg.alpha)
        _, mask = cv2.threshold(diff, self.cfg.threshold, 255, cv2.THRESH_BINARY)
        mask = mask.astype(np.uint8)
        if cv2.countNonZero(mask) > self.cfg.lighting_fraction * mask.size:
            self.background = grey
            self.lighting_jumps += 1
            return np.zeros(grey.shape, np.uint8)
        return cv2.dilate(mask, KERNEL)

    def recalibrate(self) -> None:
        """Take the last frame as the background: what moved until now has been looked at."""
        if self._grey is not None:
            self.background = self._grey.copy()

    def moved(self, mask: np.ndarray, exclude: list[tuple[int, int, int, int]] = ()) -> bool:
        """Whether at least `min_area` of the picture moved outside the `exclude` boxes (x0, y0, x1, y1, frame pixels)."""
        if exclude:
            mask = mask.copy()
            for x0, y0, x1, y1 in exclude:
                s = self.scale
                mask[max(0, int(y0 * s)):max(0, int(np.ceil(y1 * s))), max(0, int(x0 * s)):max(0, int(np.ceil(x1 * s)))] = 0
        return cv2.countNonZero(mask) > max(self.cfg.min_area * mask.size, 0)
