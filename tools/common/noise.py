"""Sounds of a room, made from numbers: coloured noise, babble, music-like tones, reverberation.

Shared by the voice model's training augmentation (tools.train.voice) and the noisy test clips
(tools.clips.noisy_speech), so both mix at the same signal-to-noise ratio, measured the same way.
All functions take and return float32 mono samples at ``sr`` Hz in [-1, 1].
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

SR = 16000


def speech_power(x: np.ndarray, sr: int = SR, frame_s: float = 0.03, range_db: float = 40.0) -> float:
    """Mean power of the frames within ``range_db`` of the loudest: the speech, not the silence around it.

    SNRs are quoted against this (RAVDESS clips are about half silence, so the whole clip's mean
    power would overstate the noise a listener hears by about 3 dB).
    """
    n = int(frame_s * sr)
    frames = x[: len(x) // n * n].reshape(-1, n).astype(np.float64)
    power = (frames ** 2).mean(1)
    if power.size == 0 or power.max() <= 0:
        return float((x.astype(np.float64) ** 2).mean())
    return float(power[power >= power.max() * 10 ** (-range_db / 10)].mean())


def trimmed(x: np.ndarray, sr: int = SR, frame_s: float = 0.03, range_db: float = 30.0) -> np.ndarray:
    """``x`` without its leading and trailing silence (frames more than ``range_db`` below the loudest)."""
    n = int(frame_s * sr)
    power = (x[: len(x) // n * n].reshape(-1, n).astype(np.float64) ** 2).mean(1)
    loud = np.flatnonzero(power >= power.max() * 10 ** (-range_db / 10)) if power.size else []
    return x[loud[0] * n:(loud[-1] + 1) * n] if len(loud) else x


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` + ``noise`` (same length) scaled to ``snr_db`` against the speech's active power."""
    gain = np.sqrt(speech_power(speech) / (float((noise.astype(np.float64) ** 2).mean()) + 1e-12)
                   / 10 ** (snr_db / 10))
    out = speech + noise * np.float32(gain)
    peak = float(np.abs(out).max())
    return (out / peak * 0.99 if peak > 0.99 else out).astype(np.float32)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1/f^exponent: 0 white, 1 pink, 2 brown (shaped in the spectrum)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def babble(pool: list[np.ndarray], n: int, talkers: int, rng: np.random.Generator) -> np.ndarray:
    """``talkers`` random clips from ``pool``, each looped to ``n`` samples from a random start, summed."""
    out = np.zeros(n, np.float32)
    for k in rng.choice(len(pool), talkers, replace=len(pool) < talkers):
        clip = pool[k]
        start = rng.integers(len(clip))
        looped = np.tile(clip, n // len(clip) + 2)[start:start + n]
        out += looped / np.float32(np.sqrt(speech_power(clip)) + 1e-6)
    return out / np.float32(np.sqrt(talkers))


def tones(n: int, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Music-like sound: notes of 0.15-0.6 s, 1-3 at once, each a few decaying harmonics."""
    out = np.zeros(n, np.float32)
    t = 0
    while t < n:
        length = int(rng.uniform(0.15, 0.6) * sr)
        time = np.arange(length) / sr
        envelope = np.minimum(1.0, time / 0.01) * np.exp(-time * rng.uniform(1, 6))
        for _ in range(rng.integers(1, 4)):
            f0 = 440.0 * 2 ** ((rng.integers(40, 84) - 69) / 12)
            note = sum(np.sin(2 * np.pi * f0 * h * time) * rng.uniform(0.3, 1.0) / h
                       for h in range(1, rng.integers(2, 6)) if f0 * h < sr / 2)
            end = min(n, t + length)
            out[t:end] += (note * envelope)[: end - t].astype(np.float32)
        t += length
    return out / np.float32(out.std() + 1e-12)


def room_response(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A synthetic room impulse response: the direct sound, then an exponentially decaying tail.

    RT60 0.2-0.8 s (a living room to a hall); the tail starts 1-10 ms after the direct sound and
    its energy is 0.3-3 times the direct sound's (near and far from the microphone).
    """
    rt60 = rng.uniform(0.2, 0.8)
    length = int(rt60 * sr)
    time = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.9 * time / rt60)
    tail[: int(rng.uniform(0.001, 0.01) * sr)] = 0.0
    tail *= np.sqrt(rng.uniform(0.3, 3.0) / (tail ** 2).sum())
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` heard in a room: convolved with ``rir``, cut to its length, at its original level."""
    wet = fftconvolve(x, rir)[: len(x)].astype(np.float32)
    return wet * np.float32(np.sqrt(speech_power(x) / (speech_power(wet) + 1e-12)))


def room_copy(clip: np.ndarray, pool: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One training copy of ``clip`` as a room might give it.

    Reverberation (half the copies), then one noise at 0-20 dB SNR: coloured (white, pink or
    brown), babble of 3-6 talkers from ``pool`` (other training speakers), or music-like tones;
    then a gain of -12..+12 dB (clipped at full scale, as a cheap microphone would).
    """
    x = reverberate(clip, room_response(rng)) if rng.random() < 0.5 else clip
    kind = rng.choice(["coloured", "babble", "tones"], p=[0.4, 0.4, 0.2])
    if kind == "coloured":
        noise = coloured_noise(len(x), float(rng.choice([0.0, 1.0, 2.0])), rng)
    elif kind == "babble" and pool:
        noise = babble(pool, len(x), int(rng.integers(3, 7)), rng)
    else:
        noise = tones(len(x), rng)
    x = mix(x, noise, rng.uniform(0, 20))
    return np.clip(x * np.float32(10 ** (rng.uniform(-12, 12) / 20)), -1, 1)
