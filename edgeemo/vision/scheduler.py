"""Where to look for faces in each frame: keyframes, regions around followed faces, or nowhere.

Detecting every frame in full is most of the daemon's cost, and a room with nobody in it would cost
as much as a busy one. Instead (Frigate and MediaPipe's idea, for faces):

* a keyframe, full-frame detection, every `full_frame_every` frames, and at once when motion
  appears outside the faces followed (someone may have walked in);
* between keyframes, detection only in a region around each followed face (the face's box grown by
  `region_margin` of its size on every side), all regions in one batch, at the keyframe's scale or
  smaller, so that the largest face is at most `region_face_px` in the model's input (the model is
  accurate from about 10 px up, and a close face need not cost more than a far one);
* a followed face is located `locate_every` frames after it was last found, and always on a frame
  where it is due for classification, since the eye-aligned crop needs that frame's landmarks; in
  between it stays where it was last found (a face whose region came back empty is searched every
  frame until the next keyframe);
* with motion gating on, motion is looked for on one frame in `motion.every` while faces are
  followed, and on one in `full_frame_every` while none is (an entering face must be found within
  that period anyway); no followed face and no motion: no detection at all, and a live source then
  needs only the frames motion is looked for on (`needs`): its capture leaves the others
  undecoded, so an empty, still room costs next to nothing.

`full_frame_every: 1` is a keyframe every frame: detection as it was before the schedule.
The scheduler also gives every face a stable id and says when it is due for classification
(every `classify_every` frames per face, and at once when it is new), which FrameAnalysis uses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from edgeemo.config.schema import DetectorConfig
from edgeemo.vision.detector import FaceDetector
from edgeemo.core.geometry import greedy_match, iou_matrix
from edgeemo.core.types import Faces, Image
from edgeemo.vision.motion import MotionDetector

MATCH_IOU = 0.3
BODY_BELOW = 1.0   # the motion of a followed face's shoulders (this many face heights below) is that face's


@dataclass
class Followed:
    """A face found in the last frames, searched again in its region."""

    id: int
    box: np.ndarray            # [4] x, y, w, h where it was last found
    landmarks: np.ndarray      # [5,2] ... and its landmarks there
    score: float
    classified_at: int         # frame number when it was last due for classification
    located_at: int            # frame number when it was last found
    missed: int = 0            # frames in a row its region came back empty


@dataclass
class SourceState:
    frames: int = 0                                   # frames seen so far
    last_key: int | None = None                       # frame number of the last keyframe
    followed: list[Followed] = field(default_factory=list)
    motion: MotionDetector | None = None
    idle: bool = False                                # the last frame looked at was idle


@dataclass
class Counts:
    """How each frame was handled (for the bench and the tests)."""

    keyframes: int = 0
    motion_keyframes: int = 0
    region_frames: int = 0
    idle_frames: int = 0


class DetectionScheduler:
    """Keyframes + regions + motion gating over one FaceDetector, state kept per source."""

    def __init__(self, detector: FaceDetector, cfg: DetectorConfig, classify_every: int = 1) -> None:
        self.detector, self.cfg, self.classify_every = detector, cfg, classify_every
        self.states: dict[str, SourceState] = {}
        self.ids = itertools.count(1)
        self.counts = Counts()

    def forget(self, source: str) -> None:
        """Start the source afresh (a new file, a reconnected camera)."""
        self.states.pop(source, None)

    @property
    def idle_every(self) -> int:
        """While nobody is followed, motion is looked for on one frame in this many: the keyframe
        period, within which an entering face must be found anyway."""
        return self.cfg.full_frame_every

    def needs(self, source: str, number: int) -> bool:
        """Whether frame `number` of a live source must be decoded and analysed: every frame, except
        while the source is idle, when only those motion is looked for on are (called from its capture)."""
        state = self.states.get(source)
        return state is None or not state.idle or number % self.idle_every == 0

    def detect(self, image: Image, source: str = "default", number: int | None = None) -> Faces:
        """The faces of frame `number` of `source` (its number in the source, skipped frames counted;
        by default the frames seen here, in order)."""
        state = self.states.get(source)
        if state is None:
            state = self.states[source] = SourceState(
                motion=MotionDetector(self.cfg.motion) if self.cfg.motion.enabled else None)
        frame = state.frames
        state.frames += 1
        mode = self._mode(state, image, frame, frame if number is None else number)
        state.idle = mode == "idle" and state.motion is not None
        if mode == "idle":
            self.counts.idle_frames += 1
            return self._follow(state, Faces.empty(), frame, keyframe=False)
        if mode == "region":
            self.counts.region_frames += 1
            search = [f for f in state.followed if self._locate_now(f, frame)]
            regions = [self._region(f.box, image.shape) for f in search]
            found = self.detector.detect_regions(image, regions, self._region_scale(regions, search, image.shape[1])) \
                if search else Faces.empty()
            return self._follow(state, found, frame, keyframe=False, searched={f.id for f in search})
        self.counts.keyframes += 1
        self.counts.motion_keyframes += mode == "motion"
        state.last_key = frame
        if state.motion is not None:
            state.motion.recalibrate()
        return self._follow(state, self.detector.detect(image), frame, keyframe=True)

    def _mode(self, state: SourceState, image: Image, frame: int, number: int) -> str:
        """'key', 'motion' (a keyframe for motion outside the faces), 'region' or 'idle'.

        Motion is looked for on one frame in `motion.every` (by number) while faces are followed,
        and on one in `idle_every` while none is; on the others, with no face followed, there is
        nothing to do.
        """
        every = self.cfg.full_frame_every
        if every == 1:
            return "key"
        look = state.motion is not None and number % (self.cfg.motion.every if state.followed else self.idle_every) == 0
        mask = state.motion.update(image) if look else None
        if state.last_key is None:
            return "key"
        if state.motion is not None and not state.followed:
            return "motion" if look and state.motion.moved(mask) else "idle"
        if frame - state.last_key >= every:
            return "key"
        if look and state.motion.moved(mask, [self._body(f.box) for f in state.followed]):
            return "motion"
        return "region" if state.followed else "idle"

    def _locate_now(self, face: Followed, frame: int) -> bool:
        """Whether a followed face's region is searched on this frame: when it is due for classification
        (the eye-aligned crop needs its landmarks of this frame), `locate_every` frames after it was
        last found, and on every frame while it is missing."""
        return (face.missed > 0 or frame - face.located_at >= self.cfg.locate_every
                or frame - face.classified_at >= self.classify_every)

    def _follow(self, state: SourceState, faces: Faces, frame: int, keyframe: bool,
                searched: set[int] | None = None) -> Faces:
        """Match the frame's faces to all followed ones: ids, classification due, the new followed list.

        Between keyframes, a followed face left unmatched is searched again next frame if its region
        was searched now (`searched`: their ids), until the next keyframe; one not searched now is
        reported where it was last found, its last reading standing. Matching against all of them
        means a face found in a neighbour's region is that face, not a new one.
        """
        old = state.followed
        boxes = np.array([f.box for f in old], np.float32).reshape(-1, 4)
        pairs = dict((f, t) for t, f in greedy_match(iou_matrix(boxes, faces.boxes), MATCH_IOU))
        ids, due, followed = np.zeros(len(faces), np.int64), np.zeros(len(faces), bool), []
        for i in range(len(faces)):
            match = old[pairs[i]] if i in pairs else None
            if match is None or frame - match.classified_at >= self.classify_every:
                match = Followed(match.id if match else next(self.ids), faces.boxes[i], faces.landmarks[i],
                                 float(faces.scores[i]), classified_at=frame, located_at=frame)
                due[i] = True
            match.box, match.landmarks = faces.boxes[i].copy(), faces.landmarks[i].copy()
            match.score, match.located_at, match.missed = float(faces.scores[i]), frame, 0
            ids[i] = match.id
            followed.append(match)
        held: list[Followed] = []
        if not keyframe:
            matched = set(pairs.values())
            for t, f in enumerate(old):
                if t in matched:
                    continue
                if searched is not None and f.id not in searched:
                    held.append(f)
                elif f.missed + 1 < self.cfg.full_frame_every:  # its region missed it: searched again
                    f.missed += 1
                    followed.append(f)
        state.followed = followed + held
        faces.ids, faces.due = ids, due
        return with_held(faces, held) if held else faces

    def _region(self, box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The box grown by region_margin of its larger side on every side, inside the frame."""
        x, y, w, h = (float(v) for v in box)
        grow = self.cfg.region_margin * max(w, h)
        return clip_box(x - grow, y - grow, x + w + grow, y + h + grow, shape)

    def _region_scale(self, regions: list[tuple[int, int, int, int]], followed: list[Followed], width: int) -> float:
        """The keyframe's scale, or less so that the largest face is at most region_face_px; then a
        little less (at most a fifth) when that saves a step of 32 px of padding in the model's input."""
        scale = min(self.detector.cfg.input_width / width,
                    self.cfg.region_face_px / max(float(f.box[2:].max()) for f in followed))
        side = scale * max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in regions)
        snapped = side // 32 * 32
        return scale * snapped / side if snapped >= 32 and snapped >= 0.8 * side else scale

    def _body(self, box: np.ndarray) -> tuple[int, int, int, int]:
        """Where a followed face and its body move: a face width either side, half above, BODY_BELOW heights below."""
        x, y, w, h = (float(v) for v in box)
        return int(x - w), int(y - h / 2), int(x + 2 * w), int(y + h + BODY_BELOW * h)


def clip_box(x0: float, y0: float, x1: float, y1: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    height, width = shape[:2]
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    return x0, y0, max(x0 + 1, min(width, int(np.ceil(x1)))), max(y0 + 1, min(height, int(np.ceil(y1))))


def with_held(faces: Faces, held: list[Followed]) -> Faces:
    """The frame's faces and, after them, the followed faces held where they were last found (not due)."""
    return Faces(np.concatenate([faces.boxes, [f.box for f in held]]).astype(np.float32),
                 np.concatenate([faces.landmarks, [f.landmarks for f in held]]).astype(np.float32),
                 np.concatenate([faces.scores, [f.score for f in held]]).astype(np.float32),
                 ids=np.concatenate([faces.ids, [f.id for f in held]]).astype(np.int64),
                 due=np.concatenate([faces.due, np.zeros(len(held), bool)]))
