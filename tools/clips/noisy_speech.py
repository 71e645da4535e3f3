"""Speech in noise, and noise alone: the clips the voice path is measured on (tools.eval.vad, tools.eval.voice).

    python -m tools.clips.noisy_speech --out runs/noisy      # actors 01 + 04 clean, pink 10 dB, babble 10 dB (WAV)

Recipes (all from tools.common.noise, SNR against the speech's active power):
- ``pink10``: an utterance plus pink noise at 10 dB SNR;
- ``babble10``: an utterance plus babble of 4 other actors (never 01 or 04) at 10 dB SNR;
- ``speech_stream``: a room with steady noise and an utterance now and then, for the VAD;
- ``noise_stream``: a room with no one speaking: steady pink or brown noise, music-like tones, or a
  crowd (babble of 8 talkers, their utterances without the silence around them), each at a steady level, for the VAD's false alarms.
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import numpy as np
from tools.common.datasets import REPO, data_root, load_ravdess
from tools.common.noise import SR, babble, coloured_noise, mix, speech_power, tones, trimmed

HELD_OUT = (1, 4)
NOISE_LEVEL = 0.03  # rms of the room's noise in the streams (about -30 dBFS)


def clip(data: dict, i: int) -> np.ndarray:
    return data["audio"][data["offsets"][i]:data["offsets"][i + 1]].astype(np.float32) / 32768.0


def babble_pool(data: dict, exclude: tuple[int, ...]) -> list[np.ndarray]:
    """One clip per actor and emotion of every actor not in ``exclude``: voices for babble."""
    keep = np.flatnonzero(~np.isin(data["speakers"], exclude) & (data["repetition"] == 1) & (data["statement"] == 1))
    return [clip(data, i) for i in keep]


def noisy(speech: np.ndarray, kind: str, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    if kind == "clean":
        return speech
    if kind == "pink10":
        return mix(speech, coloured_noise(len(speech), 1.0, rng), 10.0)
    if kind == "babble10":
        return mix(speech, babble(pool, len(speech), 4, rng), 10.0)
    raise ValueError(f"unknown kind {kind!r}")


def speech_stream(utterances: list[np.ndarray], snr_db: float, rng: np.random.Generator,
                  lead_s: float = 30.0, gap_s: tuple[float, float] = (3.0, 5.0)) -> tuple[np.ndarray, list[tuple]]:
    """Pink noise throughout, ``lead_s`` of it alone first, then each utterance at ``snr_db`` after a gap.

    Returns the samples and each utterance's (start_s, end_s).
    """
    starts, t = [], int(lead_s * SR)
    for u in utterances:
        starts.append(t)
        t += len(u) + int(rng.uniform(*gap_s) * SR)
    noise = coloured_noise(t, 1.0, rng) * np.float32(NOISE_LEVEL)
    out = noise.copy()
    noise_power = float((noise.astype(np.float64) ** 2).mean())
    spans = []
    for start, u in zip(starts, utterances):
        gain = np.sqrt(noise_power * 10 ** (snr_db / 10) / speech_power(u))
        out[start:start + len(u)] += u * np.float32(gain)
        spans.append((start / SR, (start + len(u)) / SR))
    return np.clip(out, -1, 1), spans


def noise_stream(kind: str, seconds: float, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """``seconds`` of a room where no one speaks to the device, at a steady level."""
    n = int(seconds * SR)
    if kind in ("pink", "brown"):
        x = coloured_noise(n, 1.0 if kind == "pink" else 2.0, rng)
    elif kind == "tones":
        x = tones(n, rng)
    elif kind == "crowd":  # as a crowd is recorded: talkers without the silences between RAVDESS's takes
        x = babble([trimmed(c) for c in pool], n, 8, rng)
    else:
        raise ValueError(f"unknown noise {kind!r}")
    return np.clip(x / np.float32(x.std() + 1e-12) * np.float32(NOISE_LEVEL), -1, 1)


def write_wav(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SR)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def held_out_clips(data: dict, out: Path, kinds: tuple[str, ...] = ("clean", "pink10", "babble10"),
                   seed: int = 0) -> dict[str, list[tuple[Path, int]]]:
    """Actors 01 and 04's 120 utterances as WAVs per kind: {kind: [(path, RAVDESS label)]}."""
    rng = np.random.default_rng(seed)
    pool = babble_pool(data, HELD_OUT)
    made: dict[str, list[tuple[Path, int]]] = {k: [] for k in kinds}
    for i in np.flatnonzero(np.isin(data["speakers"], HELD_OUT)):
        for kind in kinds:
            path = out / kind / f"{data['names'][i].removesuffix('.wav')}.wav"
            if not path.exists():
                write_wav(path, noisy(clip(data, i), kind, rng, pool))
            made[kind].append((path, int(data["labels"][i])))
    return made


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "noisy")
    args = p.parse_args(argv)
    made = held_out_clips(load_ravdess(data_root(args.data)), args.out)
    for kind, files in made.items():
        print(f"{kind}: {len(files)} clips in {args.out / kind}")


if __name__ == "__main__":
    main()
