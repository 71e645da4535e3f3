"""Plain data that flows between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Yuv420:
    """A decoded video frame as the decoder left it (I420: full-size Y, half-size U and V), converted
    only where the analysis looks (vision.pixels). The planes may be views of the decoder's buffer."""

    y: np.ndarray              # [H,W] uint8, video range
    u: np.ndarray              # [H/2,W/2] uint8
    v: np.ndarray              # [H/2,W/2] uint8

    @property
    def shape(self) -> tuple[int, int, int]:
        """As a BGR image's: height, width, 3."""
        return (*self.y.shape, 3)


Image = np.ndarray | Yuv420    # HxWx3 uint8 BGR, or a video file's frame in its planes


@dataclass(slots=True)
class Frame:
    """One decoded image as it left the capture stage."""

    image: Image               # HxWx3 uint8 BGR (cameras, stills), or Yuv420 (video files)
    source: str                # source name from the config
    index: int                 # frame number within the source, from 0 (frames skipped while idle counted)
    pts: float                 # seconds into the media (monotonic clock offset for cameras)
    captured_at: float         # time.monotonic() when the frame was read


FACE_SHAPES = {"boxes": (4,), "landmarks": (5, 2), "scores": (), "probs": (7,), "ids": (), "due": ()}  # per face


@dataclass(slots=True)
class Faces:
    """All faces of one frame, as arrays (one row per face), in frame pixels."""

    boxes: np.ndarray          # [N,4] float32 x, y, w, h
    landmarks: np.ndarray      # [N,5,2] float32: right eye, left eye, nose, right/left mouth corner
    scores: np.ndarray         # [N] float32 detector confidence
    probs: np.ndarray | None = None  # [N,7] float32 emotion probabilities in LABELS order
    ids: np.ndarray | None = None    # [N] int: which followed face each is (vision.scheduler), None: unknown
    due: np.ndarray | None = None    # [N] bool: classify this face now (else its last reading stands)

    def __post_init__(self) -> None:
        """Every field holds one row per face, in the shape written beside it; a mismatch is a bug, caught here."""
        n = len(self.boxes)
        for name, shape in FACE_SHAPES.items():
            value = getattr(self, name)
            if value is not None and value.shape != (n, *shape):
                raise ValueError(f"Faces.{name}: expected shape {(n, *shape)}, got {value.shape}")

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, rows: np.ndarray | list[int] | slice) -> "Faces":
        """The faces at `rows`, every field sliced together (a field that is None stays None)."""
        return Faces(*(None if (v := getattr(self, name)) is None else v[rows] for name in FACE_SHAPES))


@dataclass(slots=True)
class TrackEvent:
    """A change in a face track worth telling subscribers about."""

    type: str                  # start | change | update | end
    track: int
    source: str
    pts: float
    probs: np.ndarray          # [7] smoothed probabilities in LABELS order
    box: tuple[int, int, int, int] | None   # None for voice: a voice has no box
    modality: str = "face"     # face | voice | fused
    captured_at: float = 0.0   # monotonic time of the frame (or last audio sample) this event came from
    components: dict[str, np.ndarray] | None = None  # fused only: {"face": [7], "voice": [7]}


@dataclass(slots=True)
class VoiceWindow:
    """The voice reading of one analysis window of a source's sound."""

    source: str
    start: float               # pts of the first sample, on the source's video clock
    end: float                 # pts just after the last sample
    probs: np.ndarray          # [7] probabilities in LABELS order
    speech_ratio: float        # share of the window's 30 ms frames that the VAD called speech
    captured_at: float         # monotonic time the last sample was captured


@dataclass(slots=True)
class Work:
    """What travels through the stage queues: a frame and what the stages found in it."""

    frame: Frame
    faces: Faces = field(default_factory=Faces.empty)
    events: list[TrackEvent] = field(default_factory=list)
    present: list[dict] = field(default_factory=list)  # reported tracks visible now (for the state topic)
