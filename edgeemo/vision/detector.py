"""Face detection with YuNet: frame in, `Faces` (boxes, 5 landmarks, scores) out, in frame pixels.

The frame is scaled so its width is `input_width` (faces in webcam frames are big; YuNet is best
at 10-300 px and far cheaper at half size), padded to multiples of 32, and the 12 output tensors
are decoded with numpy as described in models/README.md.

`detect_regions` runs the same model, at the same scale, on crops around faces already known (the
model takes any input size): one batch for all crops, each far smaller than the frame, so a face
that is followed costs a fraction of a full-frame pass and keeps exact landmarks.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from edgeemo.config.schema import DetectorConfig
from edgeemo.core.inference import InferenceModel, fits
from edgeemo.core.types import Faces, Image
from edgeemo.vision.pixels import region, shrunk_bgr

STRIDES = (8, 16, 32)


class FaceDetector:
    def __init__(self, cfg: DetectorConfig, model_path: Path) -> None:
        self.cfg = cfg
        self.model = InferenceModel(model_path, cfg.backend, cfg.threads)
        names = self.model.output_names
        missing = [f"{kind}_{s}" for s in STRIDES for kind in ("cls", "obj", "bbox", "kps") if f"{kind}_{s}" not in names]
        if missing or not fits(self.model.input_shape, (None, 3, None, None)):
            raise self.model.refuse("detector.model", "is not a YuNet face detector, which takes [N, 3, H, W] and "
                                    "gives cls/obj/bbox/kps outputs at strides 8, 16 and 32")
        self._order = [[names.index(f"{kind}_{s}") for kind in ("cls", "obj", "bbox", "kps")] for s in STRIDES]
        self._blob = np.zeros(0, np.float32)
        self._regions = np.zeros(0, np.float32)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def detect(self, frame: Image) -> Faces:
        h, w = frame.shape[:2]
        scale = self.cfg.input_width / w
        dw, dh = self.cfg.input_width, max(32, round(h * scale))
        blob = self._input_blob(dh, dw)
        resized, sx, sy = shrunk_bgr(frame, dw, dh)
        blob[0, :, :dh, :dw] = resized.transpose(2, 0, 1)
        _, boxes, landmarks, scores = self._decode(self.model.run(blob), blob.shape[2], blob.shape[3])
        return self._select(boxes / [sx, sy, sx, sy], landmarks / [sx, sy], scores)

    def detect_regions(self, frame: Image, regions: list[tuple[int, int, int, int]],
                       scale: float | None = None) -> Faces:
        """Faces inside the regions (x0, y0, x1, y1 in frame pixels), one batch, at `scale` (default: the full frame's)."""
        if not regions:
            return Faces.empty()
        scale = scale or self.cfg.input_width / frame.shape[1]
        sizes = [(max(8, round((y1 - y0) * scale)), max(8, round((x1 - x0) * scale))) for x0, y0, x1, y1 in regions]
        ph = math.ceil(max(h for h, _ in sizes) / 32) * 32
        pw = math.ceil(max(w for _, w in sizes) / 32) * 32
        blob = self._region_blob((len(regions), 3, ph, pw))
        factors, offsets = np.empty((len(regions), 2), np.float32), np.empty((len(regions), 2), np.float32)
        for i, ((x0, y0, x1, y1), (dh, dw)) in enumerate(zip(regions, sizes)):
            part, x0, y0 = region(frame, x0, y0, x1, y1)
            crop, sx, sy = shrunk_bgr(part, dw, dh)
            blob[i, :, :dh, :dw] = crop.transpose(2, 0, 1)
            factors[i], offsets[i] = (sx, sy), (x0, y0)
        items, boxes, landmarks, scores = self._decode(self.model.run(blob), ph, pw)
        factor, offset = factors[items], offsets[items]
        boxes[:, :2] = boxes[:, :2] / factor + offset
        boxes[:, 2:] /= factor
        return self._select(boxes, landmarks / factor[:, None] + offset[:, None], scores)

    def _input_blob(self, dh: int, dw: int) -> np.ndarray:
        """A zero-padded NCHW buffer, reused while the frame size stays the same."""
        shape = (1, 3, math.ceil(dh / 32) * 32, math.ceil(dw / 32) * 32)
        if self._blob.shape != shape:
            self._blob = np.zeros(shape, np.float32)
        return self._blob

    def _region_blob(self, shape: tuple[int, int, int, int]) -> np.ndarray:
        """The regions' NCHW batch, reused while its shape stays the same; zeroed, as the padding must be."""
        if self._regions.shape != shape:
            self._regions = np.zeros(shape, np.float32)
        else:
            self._regions.fill(0.0)
        return self._regions

    def _grid(self, ph: int, pw: int) -> tuple[np.ndarray, np.ndarray]:
        """Cell (column, row) and stride of every prediction, strides in order, cached per input size."""
        if (ph, pw) not in self._grids:
            cells, strides = [], []
            for s in STRIDES:
                rows, cols = np.mgrid[0:ph // s, 0:pw // s]
                cells.append(np.stack([cols.ravel(), rows.ravel()], 1).astype(np.float32))
                strides.append(np.full(cols.size, s, np.float32))
            self._grids[(ph, pw)] = (np.concatenate(cells), np.concatenate(strides))
        return self._grids[(ph, pw)]

    def _decode(self, outputs: list[np.ndarray], ph: int,
                pw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(batch item, box, landmarks, score) of every prediction above the threshold, all items and strides at once."""
        cells, strides = self._grid(ph, pw)
        joined = [np.concatenate([outputs[order[k]] for order in self._order], axis=1) for k in range(4)]
        # cls and obj are sigmoid outputs: their product is compared squared, and clipped only where kept.
        product = joined[0][:, :, 0] * joined[1][:, :, 0]
        items, keep = np.nonzero(product >= self.cfg.score_threshold ** 2)
        if keep.size == 0:
            return items, np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32)
        bbox, stride, cell = joined[2][items, keep], strides[keep, None], cells[keep]
        size = np.exp(bbox[:, 2:]) * stride
        boxes = np.concatenate([(cell + bbox[:, :2]) * stride - size / 2, size], axis=1)
        landmarks = (cell[:, None, :] + joined[3][items, keep].reshape(-1, 5, 2)) * stride[:, :, None]
        return items, boxes, landmarks, np.sqrt(np.clip(product[items, keep], 0, 1))

    def _select(self, boxes: np.ndarray, landmarks: np.ndarray, scores: np.ndarray) -> Faces:
        """Non-maximum suppression, minimum size, at most max_faces (best first)."""
        if len(scores) == 0:
            return Faces.empty()
        # No top_k here: OpenCV applies it to the candidates before suppression, and one face has
        # several candidates, so a top_k of max_faces can drop whole faces from a busy frame.
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.cfg.score_threshold, self.cfg.nms_threshold)
        keep = np.asarray(keep, np.int64).reshape(-1)
        keep = keep[np.minimum(boxes[keep, 2], boxes[keep, 3]) >= self.cfg.min_face_px][:self.cfg.max_faces]
        return Faces(boxes[keep].astype(np.float32), landmarks[keep].astype(np.float32),
                     scores[keep].astype(np.float32))
