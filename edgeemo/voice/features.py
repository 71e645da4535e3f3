"""Audio front-end for the voice-emotion model, shared by the training tools and the daemon.

Features are the ones python_speech_features computes (``logfbank`` / ``mfcc`` + ``delta``), ported
to vectorised float32 numpy so that the daemon does not pay for that package's per-call filterbank
construction, index-array framing, float64 maths and Python loop over frames in ``delta``: the
port gives the same numbers (tests/test_voice_features.py checks it against the package), faster
(timings in models/edgeemo-voice.md). scipy.fft is used when installed (python_speech_features
needs scipy anyway): numpy.fft is slower on a batch of frames. Every setting lives in :class:`AudioFrontEnd`,
which the voice model card carries (``"audio"``), so a retrained model with other features needs no
code change.

The module also has a small energy VAD (:func:`speech_mask`, :func:`speech_segments`) that lets the
daemon skip silence. Its threshold is relative to the noise floor, so steady noise (fans, hum,
hiss) is never called speech however loud it is.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from functools import cached_property

import numpy as np

try:  # scipy's pocketfft transforms a batch of frames at once, where numpy.fft loops over rows
    from scipy.fft import rfft as _rfft
except ImportError:  # pragma: no cover - same numbers, slower
    _rfft = np.fft.rfft

KINDS = ("logmel", "mfcc")
NORMALISATIONS = ("utterance-cmvn", "utterance-cmn", "none")
WINDOWS = ("hamming", "hann", "rect")
# Power floor before the log: python_speech_features replaces exact zeros by float64 eps; a floor
# that float32 can hold keeps digital silence from producing huge negative values.
POWER_FLOOR = 1e-10
# Variance floor of the per-window normalisation, so that a constant window (digital silence)
# gives zeros instead of dividing by zero.
VAR_FLOOR = 1e-5


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int, n_fft: int, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Triangular mel filters [n_filters, n_fft//2+1], built exactly like python_speech_features.

    (Bin edges by ``floor((nfft+1) * hz / sr)``, peak 1.) Built once per front-end, not per call.
    """
    mels = np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), n_filters + 2)
    bins = np.floor((n_fft + 1) * mel_to_hz(mels) / sample_rate).astype(int)
    bank = np.zeros((n_filters, n_fft // 2 + 1))
    for j in range(n_filters):  # 40 filters at construction: not on the per-sample path
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        k = np.arange(lo, mid)
        bank[j, k] = (k - lo) / max(mid - lo, 1)
        k = np.arange(mid, hi)
        bank[j, k] = (hi - k) / max(hi - mid, 1)
    return bank


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix [n_in, n_out] (scipy.fftpack.dct(type=2, norm='ortho'))."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[:, 0] /= np.sqrt(2.0)
    return m


def frame_count(n_samples: int, frame_len: int, hop: int) -> int:
    """Frames python_speech_features makes: 1 + ceil((n - frame_len) / hop), at least 1.

    The last frame is zero-padded, so a 3 s window at 16 kHz, 25 ms / 10 ms gives 299 frames.
    """
    if n_samples <= frame_len:
        return 1
    return 1 + math.ceil((n_samples - frame_len) / hop)


def deltas(feat: np.ndarray, n: int = 2) -> np.ndarray:
    """Regression deltas over +-n frames with edge padding (python_speech_features.delta, vectorised)."""
    padded = np.pad(feat, ((n, n), (0, 0)), mode="edge")
    t = len(feat)
    out = np.zeros_like(feat)
    for i in range(1, n + 1):  # n = 2 shifts, each a whole-array operation
        out += i * (padded[n + i:n + i + t] - padded[n - i:n - i + t])
    return out / (2 * sum(i * i for i in range(1, n + 1)))


def normalise(feat: np.ndarray, how: str) -> np.ndarray:
    """Per-window normalisation of [T, F] features, per coefficient over time.

    ``utterance-cmvn``: zero mean, unit variance (removes microphone colour and level, which the
    daemon's microphone does not share with the training data); ``utterance-cmn``: mean only.
    """
    if how == "none":
        return feat.astype(np.float32, copy=False)
    feat = feat.astype(np.float64)  # float32 sums leave ~1e-6 residue that 1/sqrt(VAR_FLOOR) amplifies
    centred = feat - feat.mean(axis=0, keepdims=True)
    if how == "utterance-cmn":
        return centred.astype(np.float32, copy=False)
    return (centred / np.sqrt(centred.var(axis=0, keepdims=True) + VAR_FLOOR)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class AudioFrontEnd:
    """Everything that turns 16 kHz float samples into the model's [T, F] input."""

    sample_rate: int = 16000
    window_s: float = 0.025
    hop_s: float = 0.010
    kind: str = "logmel"            # logmel (logfbank) | mfcc
    n_filters: int = 40
    n_mfcc: int = 13                # mfcc only; c0 is replaced by the log frame energy, as in psf
    ceplifter: int = 22             # mfcc only
    n_fft: int = 512
    low_hz: float = 0.0
    high_hz: float = 8000.0
    preemphasis: float = 0.97
    window: str = "hamming"         # analysis window (python_speech_features' default is rect)
    use_deltas: bool = False        # append delta and delta-delta
    delta_n: int = 2
    normalisation: str = "utterance-cmvn"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if self.frame_len > self.n_fft:
            raise ValueError(f"window of {self.frame_len} samples does not fit n_fft={self.n_fft}")
        if not 0 <= self.low_hz < self.high_hz <= self.sample_rate / 2:
            raise ValueError("need 0 <= low_hz < high_hz <= sample_rate / 2")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_filters:
            raise ValueError("need 1 <= n_mfcc <= n_filters")

    # --- card -----------------------------------------------------------------------------------

    def to_card(self) -> dict:
        """The settings as the model card's ``"audio"`` object (plus derived, informative keys)."""
        return asdict(self) | {"n_features": self.n_features, "frames_per_3s": self.frames(3 * self.sample_rate),
                               "implementation": "edgeemo.voice.features (numpy port of python_speech_features)"}

    @classmethod
    def from_card(cls, card: dict) -> AudioFrontEnd:
        """Inverse of :meth:`to_card`; derived keys are checked, unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        derived = {"n_features", "frames_per_3s", "implementation"}
        unknown = set(card) - known - derived
        if unknown:
            raise ValueError(f"unknown audio front-end settings {sorted(unknown)}")
        front = cls(**{k: v for k, v in card.items() if k in known})
        if "n_features" in card and int(card["n_features"]) != front.n_features:
            raise ValueError(f"audio.n_features={card['n_features']} but the settings give {front.n_features}")
        return front

    # --- derived sizes --------------------------------------------------------------------------

    @property
    def frame_len(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def hop(self) -> int:
        return round(self.hop_s * self.sample_rate)

    @property
    def n_features(self) -> int:
        base = self.n_filters if self.kind == "logmel" else self.n_mfcc
        return base * (3 if self.use_deltas else 1)

    def frames(self, n_samples: int) -> int:
        """T of :meth:`features` for ``n_samples`` samples."""
        return frame_count(n_samples, self.frame_len, self.hop)

    # --- constant matrices, built once ----------------------------------------------------------

    @cached_property
    def _window(self) -> np.ndarray:
        n = self.frame_len
        if self.window == "hamming":
            return np.hamming(n).astype(np.float32)
        if self.window == "hann":
            return np.hanning(n).astype(np.float32)
        return np.ones(n, np.float32)

    @cached_property
    def _filterbank_t(self) -> np.ndarray:
        """[n_fft//2+1, n_filters] float32, scaled by 1/n_fft (psf's power spectrum scale)."""
        bank = mel_filterbank(self.n_filters, self.n_fft, self.sample_rate, self.low_hz, self.high_hz)
        return np.ascontiguousarray((bank.T / self.n_fft).astype(np.float32))

    @cached_property
    def _dct(self) -> np.ndarray:
        lift = 1 + (self.ceplifter / 2.0) * np.sin(np.pi * np.arange(self.n_mfcc) / self.ceplifter)
        return (dct_matrix(self.n_filters, self.n_mfcc) * (lift if self.ceplifter > 0 else 1)).astype(np.float32)

    # --- features -------------------------------------------------------------------------------

    def frame_signal(self, samples: np.ndarray) -> np.ndarray:
        """Pre-emphasised, windowed frames [T, frame_len] (a strided view, then one multiply)."""
        x = np.asarray(samples, np.float32).ravel()
        n, hop = self.frame_len, self.hop
        t = self.frames(len(x))
        padded = np.zeros((t - 1) * hop + n, np.float32)  # psf zero-pads the last frame
        padded[0] = x[0] if len(x) else 0.0
        if self.preemphasis:
            np.subtract(x[1:], np.float32(self.preemphasis) * x[:-1], out=padded[1:len(x)])
        else:
            padded[1:len(x)] = x[1:]
        frames = np.lib.stride_tricks.sliding_window_view(padded, n)[::hop]
        return frames * self._window

    def raw_features(self, samples: np.ndarray) -> np.ndarray:
        """Un-normalised [T, F] features (log-mel or MFCC, + deltas). Training crops then normalises."""
        spec = _rfft(self.frame_signal(samples), self.n_fft, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        logmel = np.log(np.maximum(power @ self._filterbank_t, POWER_FLOOR))
        if self.kind == "mfcc":
            feat = logmel @ self._dct
            energy = power.sum(axis=1) / self.n_fft
            feat[:, 0] = np.log(np.maximum(energy, POWER_FLOOR))
        else:
            feat = logmel
        if self.use_deltas:
            d1 = deltas(feat, self.delta_n)
            feat = np.concatenate([feat, d1, deltas(d1, self.delta_n)], axis=1)
        return feat.astype(np.float32, copy=False)

    def normalise(self, feat: np.ndarray) -> np.ndarray:
        return normalise(feat, self.normalisation)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Model input [T, F] float32 for one window of 16 kHz mono float samples in [-1, 1]."""
        return self.normalise(self.raw_features(samples))


# --- voice activity -------------------------------------------------------------------------------


SPEECH_BAND_HZ = (250.0, 3500.0)


@functools.lru_cache(maxsize=4)
def speech_band(sr: int) -> np.ndarray:
    """Second-order sections of a 4th-order Butterworth band-pass over ``SPEECH_BAND_HZ``.

    scipy.signal is imported here, not with the module: it is slow to import, and every command
    without voice (check, events, detect on a picture) would pay for it for nothing."""
    from scipy.signal import butter

    return butter(4, SPEECH_BAND_HZ, btype="bandpass", fs=sr, output="sos")


def frame_energy_db(samples: np.ndarray, sr: int, frame_s: float = 0.03) -> np.ndarray:
    """Mean-square level in the speech band of non-overlapping frames, in dB re full scale.

    Band-limited because most of a room's steady noise (fans, traffic, hum, pink and brown noise)
    lies below and above the band that carries the voice: in the band, speech stands further above
    it. A trailing part frame is dropped.
    """
    from scipy.signal import sosfilt  # loaded already where the voice stage built its filter (vad.SpeechDetector)

    return frame_levels_db(sosfilt(speech_band(sr), np.asarray(samples, np.float32).ravel()), sr, frame_s)


def frame_levels_db(band: np.ndarray, sr: int, frame_s: float = 0.03) -> np.ndarray:
    """Mean-square level of non-overlapping frames of already band-passed samples, in dBFS."""
    n = max(1, round(frame_s * sr))
    t = len(band) // n
    if t == 0:
        return np.zeros(0, np.float32)
    x = np.asarray(band[:t * n], np.float32).reshape(t, n)
    return (10 * np.log10(np.einsum("ij,ij->i", x, x) / n + 1e-12)).astype(np.float32)


def speech_mask(samples: np.ndarray, sr: int, frame_s: float = 0.03, threshold_db: float = 12.0,
                noise_floor_db: float | None = None, floor_percentile: float = 10.0,
                min_level_db: float = -60.0) -> np.ndarray:
    """True for each ``frame_s`` frame whose level is ``threshold_db`` above the noise floor.

    The floor is ``noise_floor_db`` when the caller tracks it over a longer stream (the daemon), else
    the ``floor_percentile`` percentile of this window's frame levels: speech has pauses, steady noise
    does not rise above itself, so noise alone never passes. Frames below ``min_level_db`` dBFS are
    never speech (digital silence, a muted microphone).
    """
    level = frame_energy_db(samples, sr, frame_s)
    if level.size == 0:
        return np.zeros(0, bool)
    floor = float(np.percentile(level, floor_percentile)) if noise_floor_db is None else noise_floor_db
    return speech_frames(level, floor, threshold_db, min_level_db)


def speech_frames(level: np.ndarray, floor_db: float, threshold_db: float, min_level_db: float = -60.0) -> np.ndarray:
    """True for each frame level ``threshold_db`` above the noise floor and above ``min_level_db`` dBFS."""
    return (level > floor_db + threshold_db) & (level > min_level_db)


def speech_segments(samples: np.ndarray, sr: int, frame_s: float = 0.03, threshold_db: float = 12.0,
                    noise_floor_db: float | None = None, min_speech_s: float = 0.1, max_gap_s: float = 0.3,
                    pad_s: float = 0.1) -> list[tuple[float, float]]:
    """Speech stretches ``[(start_s, end_s), ...]`` from :func:`speech_mask`.

    Gaps shorter than ``max_gap_s`` are bridged (pauses between words), stretches shorter than
    ``min_speech_s`` dropped (clicks, door slams), and each stretch padded by ``pad_s`` on both sides
    (soft onsets and endings fall below the threshold).
    """
    mask = speech_mask(samples, sr, frame_s, threshold_db, noise_floor_db)
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]  # frame indices, end exclusive
    merged: list[list[int]] = []
    for s, e in zip(starts, ends):  # one iteration per speech stretch, not per sample
        if merged and (s - merged[-1][1]) * frame_s < max_gap_s:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    total = len(np.asarray(samples).ravel()) / sr
    return [(max(0.0, s * frame_s - pad_s), min(total, e * frame_s + pad_s))
            for s, e in merged if (e - s) * frame_s >= min_speech_s]
