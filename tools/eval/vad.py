"""The voice path's speech detection in rooms: speech found in noise, noise alone left alone.

    python -m tools.eval.vad                     # -> bench/results/vad_noise.json

The daemon's own voice stage (edgeemo.voice.stage.VoiceStage: a window every hop, the VAD against
the noise floor of the last 30 s, a reading when at least ``min_speech_s`` of speech is there) is
fed the streams of tools.clips.noisy_speech as a microphone would feed it:
- utterances (10 per RAVDESS actor, 240) in pink noise at 10 dB SNR, 3-5 s apart: an utterance is
  found when a reading overlaps it;
- 10 minutes each of steady pink noise, brown noise (a fan), music-like tones and a crowd (babble
  of 8 talkers, as from a television): every run of readings is a voice stream, a false alarm.
Acceptance: >= 95 % of the utterances found, <= 1 voice stream per 10 minutes of each noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tools.clips.noisy_speech import babble_pool, clip, noise_stream, speech_stream
from tools.common.datasets import REPO, data_root, load_ravdess
from tools.common.noise import SR

from edgeemo.config.schema import VoiceConfig
from edgeemo.core.resources import models_dir
from edgeemo.sources.audio import AudioRing
from edgeemo.voice.classifier import VoiceClassifier, load_voice_card
from edgeemo.voice.stage import VoiceStage

BLOCK = 1600  # a microphone's block: 0.1 s


def readings(samples: np.ndarray, classifier: VoiceClassifier, cfg: VoiceConfig) -> list[tuple[float, float] | None]:
    """(start_s, end_s) of the reading of every analysis window, None for a window without speech."""
    ring = AudioRing(cfg.buffer_s)
    got: list[tuple[float, float] | None] = []
    stage = VoiceStage("eval", ring, classifier, cfg,
                       lambda _s, r, _pts: got.append(None if r is None else (r.start, r.end)), None)
    stage.start()
    for i in range(0, len(samples), BLOCK):
        ring.write(samples[i:i + BLOCK], i / SR, lossless=True, stop=threading.Event())
    ring.close()
    stage.join()
    return got


def streams(got: list[tuple[float, float] | None]) -> int:
    """Voice streams: runs of windows with a reading (the fuser starts one at each)."""
    return sum(1 for prev, cur in zip([None, *got], got) if cur is not None and prev is None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--model", default="edgeemo-voice-int8.json", help="voice model card (name in models/ or path)")
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of each noise")
    p.add_argument("--per-actor", type=int, default=10, help="utterances per actor")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "vad_noise.json")
    args = p.parse_args(argv)
    data = load_ravdess(data_root(args.data))
    rng = np.random.default_rng(0)
    card = Path(args.model) if Path(args.model).is_file() else models_dir() / args.model
    classifier, cfg = VoiceClassifier(load_voice_card(card)), VoiceConfig()
    chosen = [i for a in range(1, 25) for i in rng.choice(np.flatnonzero(data["speakers"] == a), args.per_actor,
                                                           replace=False)]
    t0 = time.time()
    samples, spans = speech_stream([clip(data, i) for i in chosen], 10.0, rng)
    got = [r for r in readings(samples, classifier, cfg) if r is not None]
    found = sum(any(s < end and e > start for s, e in got) for start, end in spans)
    result = {"speech_pink_10db": {"utterances": len(spans), "found": found, "share": found / len(spans)}}
    print(f"speech in pink noise at 10 dB: {found}/{len(spans)} utterances found", flush=True)
    pool = babble_pool(data, (1, 4))
    for kind in ("pink", "brown", "tones", "crowd"):
        got = readings(noise_stream(kind, args.minutes * 60, rng, pool), classifier, cfg)
        n = streams(got)
        result[f"noise_{kind}"] = {"minutes": args.minutes, "voice_streams": n,
                                   "windows_with_reading": sum(r is not None for r in got), "windows": len(got)}
        print(f"{kind}: {n} voice streams in {args.minutes:g} min", flush=True)
    result["acceptance"] = {"speech_found_share_min": 0.95, "streams_per_10_min_max": 1,
                            "met": result["speech_pink_10db"]["share"] >= 0.95 and all(
                                result[f"noise_{k}"]["voice_streams"] / args.minutes * 10 <= 1
                                for k in ("pink", "brown", "tones", "crowd"))}
    result |= {"config": {"vad_threshold_db": cfg.vad_threshold_db, "window_s": cfg.window_s, "hop_s": cfg.hop_s,
                          "min_speech_s": cfg.min_speech_s},
               "model": card.name, "seconds": round(time.time() - t0, 1),
               "command": "python -m tools.eval.vad " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["acceptance"]))


if __name__ == "__main__":
    main()
