"""edgeemo: a headless edge daemon for real-time face (and voice) emotion recognition."""

import os

# numpy's OpenBLAS starts a worker per core, and its workers spin after every call. The daemon's
# matrix products are tiny (the filter bank of one voice window), so those workers only burn CPU:
# one thread, unless the user asks for more. (Set before anything imports numpy.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

# The seven labels every event uses, in this order (FER-2013's canonical order).
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
