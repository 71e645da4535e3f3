"""edgeemo: a headless edge daemon for real-time face (and voice) emotion recognition."""

__version__ = "0.1.0"

# The seven labels every event uses, in this order (FER-2013's canonical order).
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
