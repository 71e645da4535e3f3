"""Export the trained voice-emotion net to ONNX (fp32 and static int8), with cards and a report.

    python -m tools.export.voice runs/voice/all/final.pt --cv runs/voice
        -> models/edgeemo-voice.onnx + .json, models/edgeemo-voice-int8.onnx + .json (if int8 is not
           slower), models/edgeemo-voice.md, models/edgeemo-voice-confusion.png

Steps, each printed:
1. ONNX with input ``features`` [batch, frames, F] (both axes dynamic: the net pools over time), checked
   against PyTorch through onnxruntime on real 3 s windows and on whole clips.
2. Static int8 (onnxruntime quantize_static, QDQ, per-channel weights) calibrated on 3 s windows of
   the model's own training actors only (the checkpoint lists them).
3. With ``--cv DIR`` (the folder of ``train_voice.py --folds``): the CV numbers of the report, and the
   same CV re-run through onnxruntime: each fold's ``final.pt`` exported and int8-quantized with
   calibration on that fold's training actors, then tested on its held-out actors, so the int8 card
   carries int8 numbers.
4. Latency of a whole 3 s analysis (front-end features + model), 1 thread, median of 100, for fp32 and
   int8 in onnxruntime and OpenVINO, and of the front-end alone (numpy port vs python_speech_features).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tools.common.datasets import REPO, data_root, load_ravdess
from tools.common.machine import cpu_name
from tools.eval.voice_calibration import cv_calibration_keys, cv_figures, folds_acc8, held_out
from tools.train.voice import (FOLD_TO_FACE, LABELS8, SHIPPED_EXCLUDED, build_model, count_macs,
                         metrics)

from edgeemo.voice.features import AudioFrontEnd

OPSET = 17
DEFAULT_CONTEXT = REPO / "bench" / "results" / "voice_context.json"
INPUT = "features"
LICENCE = "weights trained by edgeemo on RAVDESS (CC BY-NC-SA 4.0): non-commercial"
DATA_NOTE = ("RAVDESS speech, audio-only (Livingstone & Russo 2018, Zenodo 1188976, CC BY-NC-SA 4.0), 16 kHz "
             "mono: 1440 clips, 24 actors, 8 emotions. The shipped model is trained on all actors except 01 and "
             "04 (their voices are in the sample video); the CV numbers come from 6 speaker-independent folds of "
             "4 held-out actors each, last epoch of a fixed schedule (no test-set selection).")
Infer = Callable[[np.ndarray], np.ndarray]


# --- model and ONNX -----------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict, AudioFrontEnd]:
    """The net (eval mode), the checkpoint dict of train_voice.py, and its audio front-end."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt, AudioFrontEnd.from_card(ckpt["audio"])


def export_onnx(model: torch.nn.Module, path: Path, n_features: int, frames: int) -> None:
    """ONNX with input ``features`` [batch, frames, F] and output ``logits`` [batch, 8], both axes dynamic.

    TorchScript exporter (dynamo=False), as for the face model: it folds BatchNorm into the
    convolutions, giving the plain Conv/Relu/MaxPool graph the int8 quantizer and OpenVINO like.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, frames, n_features),), str(path), input_names=[INPUT],
                          output_names=["logits"], opset_version=OPSET, do_constant_folding=True, dynamo=False,
                          dynamic_axes={INPUT: {0: "batch", 1: "frames"}, "logits": {0: "batch"}})


def ort_infer(path: Path, threads: int = 1) -> Infer:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT: x})[0]


def openvino_infer(path: Path, threads: int = 1) -> Infer:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[compiled.output(0)].copy()


# --- data -----------------------------------------------------------------------------------------------


def clip_audio(data: dict, i: int) -> np.ndarray:
    off = data["offsets"]
    return data["audio"][off[i]:off[i + 1]].astype(np.float32) / 32768.0


def windows(data: dict, actors: list[int], front: AudioFrontEnd, n: int, window_s: float = 3.0,
            seed: int = 0) -> np.ndarray:
    """``n`` model inputs [n, frames, F] of random 3 s windows of clips of ``actors`` (all emotions),
    computed from audio exactly as the daemon does (crop the samples, then front.features)."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(np.isin(data["speakers"], actors))
    length = int(window_s * front.sample_rate)
    out = []
    for i in rng.choice(pool, n, replace=n > len(pool)):
        x = clip_audio(data, i)
        x = np.pad(x, (0, max(0, length - len(x))))
        start = rng.integers(0, len(x) - length + 1)
        out.append(front.features(x[start:start + length]))
    return np.stack(out)


def clip_logits(infer: Infer, data: dict, idx: np.ndarray, front: AudioFrontEnd) -> np.ndarray:
    """Logits [N, 8] of whole clips (the way train_voice.py tests)."""
    return np.concatenate([infer(front.features(clip_audio(data, i))[None]) for i in idx])


# --- int8 -----------------------------------------------------------------------------------------------


def quantize(fp32: Path, int8: Path, calib: np.ndarray) -> dict:
    """Static QDQ int8 (per-channel symmetric weights, uint8 activations), calibrated on ``calib``."""
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{INPUT: calib[i:i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    return {"tool": f"onnxruntime.quantization.quantize_static (onnxruntime {onnxruntime.__version__})",
            "format": "QDQ", "weights": "int8 per-channel symmetric", "activations": "uint8 asymmetric, MinMax",
            "calibration": f"{len(calib)} random 3 s windows of the training actors"}


def onnx_cv(cv_dir: Path, data: dict, calib_n: int, folds: list[dict]) -> dict:
    """Re-run the CV folds through onnxruntime: fp32 and int8 (calibrated on that fold's training actors)."""
    per_fold = []
    for fold in folds:
        model, ckpt, front = load_checkpoint(cv_dir / f"fold{fold['fold']}" / "final.pt")
        test = np.flatnonzero(np.isin(data["speakers"], fold["test_actors"]))
        with tempfile.TemporaryDirectory() as tmp:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            export_onnx(model, fp32, front.n_features, front.frames(3 * front.sample_rate))
            quantize(fp32, int8, windows(data, ckpt["train_actors"], front, calib_n))
            row = {"fold": fold["fold"]}
            for name, path in (("fp32", fp32), ("int8", int8)):
                m = metrics(clip_logits(ort_infer(path), data, test, front), data["labels"][test])
                row |= {f"{name}_{k}": m[k] for k in ("acc8", "acc7", "f1_8")}
        print(f"  fold {fold['fold']}: onnxruntime fp32 acc8 {row['fp32_acc8']:.3f} (PyTorch {fold['acc8']:.3f}), "
              f"int8 acc8 {row['int8_acc8']:.3f}", flush=True)
        per_fold.append(row)
    keys = [k for k in per_fold[0] if k != "fold"]
    return {"folds": per_fold, **{f"{k}_mean": float(np.mean([r[k] for r in per_fold])) for k in keys},
            **{f"{k}_std": float(np.std([r[k] for r in per_fold], ddof=1)) for k in keys}}


# --- latency --------------------------------------------------------------------------------------------


def median_ms(fn: Callable[[], object], runs: int = 100, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def psf_features(front: AudioFrontEnd, x: np.ndarray) -> np.ndarray:
    """The same features through python_speech_features itself (for the speed comparison)."""
    import python_speech_features as psf

    kw = {"samplerate": front.sample_rate, "winlen": front.window_s, "winstep": front.hop_s,
          "nfilt": front.n_filters, "nfft": front.n_fft, "lowfreq": front.low_hz, "highfreq": front.high_hz,
          "preemph": front.preemphasis,
          "winfunc": {"hamming": np.hamming, "hann": np.hanning}.get(front.window, lambda n: np.ones(n))}
    if front.kind == "mfcc":
        feat = psf.mfcc(x, numcep=front.n_mfcc, ceplifter=front.ceplifter, appendEnergy=True, **kw)
    else:
        feat = np.log(psf.fbank(x, **kw)[0])
    if front.use_deltas:
        d1 = psf.delta(feat, front.delta_n)
        feat = np.hstack([feat, d1, psf.delta(d1, front.delta_n)])
    return front.normalise(feat)


def latency(front: AudioFrontEnd, engines: dict[str, Infer], audio: np.ndarray, runs: int) -> dict:
    """Median ms per 3 s window: the front-end alone (ours and psf), each model alone, features + model."""
    from edgeemo.voice.vad import SpeechDetector

    feats = front.features(audio)[None]
    vad = SpeechDetector(front.sample_rate, 10.0)
    ends = itertools.count(len(audio), front.sample_rate)  # a window every second, as the voice stage reads them
    out = {"vad_ms": median_ms(lambda: vad.speech(audio, next(ends)), runs),
           "features_numpy_ms": median_ms(lambda: front.features(audio), runs)}
    try:
        out["features_python_speech_features_ms"] = median_ms(lambda: psf_features(front, audio), runs)
    except ImportError:
        pass
    for name, infer in engines.items():
        out[f"{name}_model_ms"] = median_ms(lambda run=infer: run(feats), runs)
        out[f"{name}_total_ms"] = median_ms(lambda run=infer: run(front.features(audio)[None]), runs)
    return {k: round(v, 3) for k, v in out.items()}


# --- cards and report -----------------------------------------------------------------------------------


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def make_card(name: str, file: str, front: AudioFrontEnd, metrics_: dict, command: str, extra: dict) -> dict:
    return {
        "name": name, "task": "voice-emotion", "file": file, "labels": list(LABELS8), "output": "logits",
        "fold_to_face_labels": dict(FOLD_TO_FACE),
        "input": {"name": INPUT, "layout": "NTF", "window_s": 3.0, "frames": front.frames(3 * front.sample_rate),
                  "features": front.n_features, "dynamic_axes": ["batch", "frames"], "dtype": "float32",
                  "how": "edgeemo.voice.features.AudioFrontEnd.from_card(card['audio']).features(samples) of "
                         "16 kHz mono float32 samples in [-1, 1]; any window length works (mean+std pooling "
                         "over time), the model was trained on 3 s"},
        "audio": front.to_card(), "metrics": metrics_, "licence": LICENCE,
        "training": {"command": command, "data": DATA_NOTE} | extra.pop("training", {}), **extra,
    }


def card_metrics(cv: dict | None, lat: dict, engine: str, heldout: dict, onnx_cv_: dict | None, kind: str,
                 runs: int) -> dict:
    m: dict = {}
    if cv is not None:
        source = onnx_cv_ if kind == "int8" and onnx_cv_ else None
        if source:  # the int8 card carries int8 numbers
            m |= {"ravdess_cv8_acc_mean": source["int8_acc8_mean"], "ravdess_cv8_acc_std": source["int8_acc8_std"],
                  "ravdess_cv7_acc_mean": source["int8_acc7_mean"], "ravdess_cv7_acc_std": source["int8_acc7_std"],
                  "ravdess_cv_macro_f1_mean": source["int8_f1_8_mean"],
                  "ravdess_cv_macro_f1_std": source["int8_f1_8_std"]}
        else:
            m |= {"ravdess_cv8_acc_mean": cv["acc8_mean"], "ravdess_cv8_acc_std": cv["acc8_std"],
                  "ravdess_cv7_acc_mean": cv["acc7_mean"], "ravdess_cv7_acc_std": cv["acc7_std"],
                  "ravdess_cv_macro_f1_mean": cv["f1_8_mean"], "ravdess_cv_macro_f1_std": cv["f1_8_std"]}
        if "temperature" in cv:
            m |= {f"ravdess_cv_{k}": cv[k] for k in ("ece7_raw", "ece7_calibrated", "ece8_raw", "ece8_calibrated")}
        if "context" in cv:  # read as `edgeemo detect` reads a file, with the card's context_s
            read = cv["context"]["reading_at_chosen"]  # with the card's temperature, as people see it
            m |= {"ravdess_cv8_detect_acc": read["acc8"], "ravdess_cv7_detect_acc": read["acc7"],
                  "ravdess_cv_calibration_note": "ECE over the held-out speech segments read with context_s by the "
                                                 "fp32 fold models, raw and cross-fitted (tools.eval.voice_context); "
                                                 "15 bins, top class; detect_acc: fp32 fold models"}
        m["ravdess_cv_note"] = (f"{len(cv['folds'])} speaker-independent folds (4 held-out actors each), last epoch, "
                                f"{'int8 onnxruntime' if source else 'fp32'}; std over folds (ddof=1); "
                                "macro-F1 over the 8 classes")
    m["latency_ms_3s_1thread"] = lat[f"{engine}_total_ms"]
    m["latency_note"] = (f"features + model for one 3 s window, onnxruntime, 1 thread, median of {runs}, "
                         f"{cpu_name()}; see edgeemo-voice.md for OpenVINO and the breakdown")
    m["heldout_actors_01_04_acc8"] = heldout[f"{kind}_acc8"]
    m["heldout_actors_01_04_acc7"] = heldout[f"{kind}_acc7"]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}


def features_note(front: AudioFrontEnd, lat: dict) -> str:
    what = (f"{front.n_filters} log-mel bands (python_speech_features `logfbank`)" if front.kind == "logmel"
            else f"{front.n_mfcc} MFCCs of {front.n_filters} mel bands, c0 = log energy (python_speech_features `mfcc`)")
    psf_ms = lat.get("features_python_speech_features_ms")
    speed = (f" It takes {lat['features_numpy_ms']:.2f} ms per 3 s window against {psf_ms:.2f} ms for "
             "python_speech_features itself (which rebuilds the filterbank per call, frames via an index array, "
             "computes in float64 and loops over frames in `delta`)." if psf_ms else "")
    return (f"{what}{' + deltas + delta-deltas' if front.use_deltas else ''}, {1000 * front.window_s:g} ms "
            f"{front.window} windows every {1000 * front.hop_s:g} ms, pre-emphasis {front.preemphasis}, "
            f"{front.n_fft}-point FFT, {front.low_hz:g}-{front.high_hz:g} Hz, then `{front.normalisation}` "
            "(per-window mean and variance per band, so microphone colour and level drop out). Computed by "
            "`edgeemo.voice.features.AudioFrontEnd`, a vectorised float32 numpy port of python_speech_features "
            "(tests/test_voice_features.py checks it gives the package's numbers)." + speed
            + (" Log-mel rather than MFCC: it keeps the spectral shape a CNN can use, lets training stretch the "
               "mel axis (vocal-tract-length perturbation, a speaker-independence augmentation MFCCs do not allow), "
               "and did better where the two were compared (fold 0 at 35 epochs, before the room augmentation: "
               "log-mel 0.654 vs 13 MFCC + deltas + delta-deltas 0.554)." if front.kind == "logmel" else ""))


def speech_context(path: Path, cv_dir: Path, strict: bool = False) -> dict:
    """The context and the per-segment calibration of tools.eval.voice_context, as CV report keys, where
    ``path`` was measured on ``cv_dir``'s folds as they are now (else nothing: the whole-clip calibration
    stands; with ``strict``, a result that does not fit them is an error)."""
    def skip(why: str) -> dict:
        if strict:
            raise SystemExit(f"--context {path}: {why}")
        print(f"   {path.name}: {why}; no context in the cards", flush=True)
        return {}

    if not path.is_file():
        return skip("not found") if strict else {}
    try:
        result = json.loads(path.read_text())
        measured_on, chosen, cal, fingerprint = result["cv"], result["chosen_s"], result["calibration"], result["folds_acc8"]
    except (ValueError, KeyError) as exc:
        return skip(f"not a tools.eval.voice_context result ({exc})")
    if (REPO / measured_on).resolve() != cv_dir.resolve():
        return skip(f"measured on {measured_on}, not {cv_dir}")
    if fingerprint != folds_acc8(cv_dir):
        return skip(f"measured on other models than {cv_dir}'s folds now (retrained since?)")
    return {"context_s": chosen, "context": result} | cv_calibration_keys(cal)


def context_read(cv: dict) -> dict:
    """The held-out clips' figures read at the card's context (tools.eval.voice_context)."""
    return cv["context"]["contexts"][f"{cv['context_s']:g}"]


def context_section(cv: dict, path: Path, md_dir: Path) -> list[str]:
    """How much sound around the speech the model hears, and why (tools.eval.voice_context)."""
    ctx = cv["context"]
    best, whole, cut = context_read(cv), ctx["whole_clip"], ctx["contexts"]["0"]
    return ["## What the model hears: the speech and its edges", "",
            f"The net learnt from 3 s crops of whole clips, silence included, and reads speech cut tight by the VAD "
            f"worse than whole clips. So the daemon and `edgeemo detect` give it each speech segment with "
            f"`context_s` = {cv['context_s']:g} s of the sound on either side (the card's key), chosen on the CV "
            f"folds' {ctx['clips']} held-out clips read as `edgeemo detect` reads a file: 8 classes "
            f"{100 * best['acc8']:.1f} % at {cv['context_s']:g} s against {100 * cut['acc8']:.1f} % with the VAD's cut "
            f"alone and {100 * whole['acc8']:.1f} % for whole clips (the best of {len(ctx['contexts'])} contexts on "
            f"these clips, so a little optimistic; the {ctx.get('no_speech_clips', 0)} clips where the VAD finds no "
            "speech as long as `voice.min_speech_s` count as wrong). The temperature below is fitted on the speech "
            f"segments read that way, one reading each as `detect` prints them: `{ctx['command']}` -> "
            f"`{os.path.relpath(path, REPO)}`.", "",
            f"![context]({os.path.relpath(path.with_suffix('.png'), md_dir)})", ""]


def markdown(args: argparse.Namespace, cv: dict | None, cv_md: str, onnx_cv_: dict | None, lat: dict,
             heldout: dict, info: dict, int8_kept: bool, compare: list[tuple[str, dict]]) -> str:
    def r(v: float) -> str:
        return f"{100 * v:.1f} %"

    lines = [f"# {args.name}: voice emotion from 3 s of speech", "",
             ("Small 1-D CNN" if info["members"] == 1 else
              f"{info['members']} small 1-D CNNs trained apart (tools.train.voice_ensemble), their logits averaged in "
              "one graph,") + " over log-mel features; 8 RAVDESS classes (neutral, calm, happy, sad, angry, fearful, "
             "disgust, surprised), folded to edgeemo's 7 labels by the card's `fold_to_face_labels` "
             "(calm -> neutral, fearful -> fear, surprised -> surprise).", "",
             f"- Files: `{args.name}.onnx` (fp32)" + (f", `{args.name}-int8.onnx` (static int8, QDQ)" if int8_kept else "")
             + ", each with its `.json` card.",
             f"- Net: {info['params'] / 1e3:.0f} k parameters, {info['macs'] / 1e6:.1f} M MACs per 3 s window "
             f"(299 frames x {info['features']} features), input `features` [batch, frames, {info['features']}], "
             "output 8 logits.",
             f"- Licence: {LICENCE}.", "",
             "## In the daemon", "",
             "`voice.model` in the config. Every `voice.hop_s` (1 s) while speech lasts, the voice stage takes the "
             "last `voice.window_s` (3 s) of the source's sound, finds the speech frames against the noise floor of "
             "the last 30 s, and gives the model only the last utterance in the window (at least "
             "`voice.min_speech_s`); `edgeemo detect` gives it each speech segment of a file. The model pools over "
             "time, so any length works. The daemon's per-clip readings and the fusion with faces: "
             "[fusion.md](fusion.md).", ""]
    history = args.out / f"{args.name}-history.md"
    if history.is_file():
        lines += [f"How this recipe was reached, with the runs that were not shipped and why: [{history.name}]"
                  f"({history.name}).", ""]
    lines += [] if not info["room_copies"] else ["## Training for rooms", "",
              f"Every clip is also heard as {info['room_copies']} room copies, made once and cached (tools.common.noise.room_copy): "
              "half of them reverberated by a synthetic room (RT60 0.2-0.8 s), each with one noise at 0-20 dB SNR "
              "against the speech's active power: coloured noise (white, pink or brown), babble of 3-6 talkers "
              "from the other actors of the same 4-actor group (so, whichever fold is trained, only training "
              "actors babble; 01 and 04 never do), or music-like tones; then a gain of -12..+12 dB. A training "
              f"crop is the clean clip with probability {info['p_clean']:g}, else a random room copy"
              + (f"; {100 * info['p_cut']:g} % of the batches are cut to the clip's speech as `edgeemo detect` "
                 "and the daemon cut it (the VAD's longest segment, crops as long as the batch's shortest), the "
                 "rest are 3 s crops of the whole clip, silence included" if info["p_cut"] else "")
              + "; speed (±10 %) and vocal-tract-length (mel axis ±10 %, a small pitch/formant change) are "
              "stretched per crop, then SpecAugment masks.", ""]
    if cv is not None:
        folds_done = len(cv["folds"])
        lines += ["## Speaker-independent cross-validation on RAVDESS", "",
                  f"{len(cv['folds'])} folds, each holding out 4 actors (01-04, 05-08, ..., 21-24) and training on "
                  "the other 20; "
                  + epochs_text(str(cv["epochs"]))
                  + ", numbers of the last epoch (no checkpoint picked on test actors). "
                  "Whole clips, PyTorch fp32. Mean ± sample std over the folds.", "", cv_md.strip(), ""]
        curve = cv["mean_curve_acc8"]
        lines += [] if not curve else [
                  "Mean test accuracy over the folds by epoch: " + ", ".join(f"{e}: {100 * a:.1f} %" for e, a in curve.items())
                  + (" (highest at the last epoch, where the learning rate reaches zero)."
                     if max(curve.values()) == list(curve.values())[-1] else "."), ""]
        lines += [
                  f"Acceptance of issue 24 (mean 8-class CV accuracy >= 66 %): "
                  f"{'met' if cv['acc8_mean'] >= 0.66 else 'NOT met'} ({100 * cv['acc8_mean']:.2f} %, {folds_done} of 6 "
                  "folds, whole clips)" + (f"; read as `edgeemo detect` reads them, with the card's context (below): "
                                           f"{r(context_read(cv)['acc8'])}." if "context" in cv else "."),
                  "",
                  f"Chance: 12.5 % (8 classes). Confusion matrix summed over the {len(cv['folds'])} folds "
                  f"(`{args.name}-confusion.png`):", "", f"![confusion]({args.name}-confusion.png)", ""]
    if cv is not None and "context" in cv:
        lines += context_section(cv, args.context or DEFAULT_CONTEXT, args.out)
    if cv is not None:
        kept = ("kept: the card's `temperature`, logits divided by it before the softmax" if cv["temperature_kept"]
                else "not kept (the card has none): it did not lower the error on folds it was not fitted to")
        lines += ["## Calibration", "",
                  f"Temperature {cv['temperature']:.3f}, fitted by negative log-likelihood on the held-out actors' "
                  + ("speech segments (read with the context above)" if "context" in cv else "logits")
                  + f" of every fold together, never on a model's own training actors; {kept}. Expected "
                  f"calibration error (15 bins, top class) without it and cross-fitted with it (each fold scored "
                  f"with a temperature fitted on the other five): 8 classes {r(cv['ece8_raw'])} -> "
                  f"{r(cv['ece8_calibrated'])}, folded to the published 7 {r(cv['ece7_raw'])} -> "
                  f"{r(cv['ece7_calibrated'])} (`python -m tools.eval."
                  + ("voice_context" if "context" in cv else "voice_calibration") + "`).", ""]
    lines += rooms_section(args.rooms, args.vad)
    if onnx_cv_ is not None:
        lines += ["The same folds through onnxruntime (each fold's model exported; int8 calibrated on that fold's "
                  "training actors only):", "", "| fold | fp32 acc 8 | int8 acc 8 | fp32 acc 7 | int8 acc 7 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {f['fold']} | {f['fp32_acc8']:.3f} | {f['int8_acc8']:.3f} | {f['fp32_acc7']:.3f} | "
                  f"{f['int8_acc7']:.3f} |" for f in onnx_cv_["folds"]]
        lines += [f"| **mean ± std** | {onnx_cv_['fp32_acc8_mean']:.3f} ± {onnx_cv_['fp32_acc8_std']:.3f} | "
                  f"{onnx_cv_['int8_acc8_mean']:.3f} ± {onnx_cv_['int8_acc8_std']:.3f} | "
                  f"{onnx_cv_['fp32_acc7_mean']:.3f} | {onnx_cv_['int8_acc7_mean']:.3f} |", ""]
    if compare:
        lines += ["## Design choices (same folds, same schedule)", "", "| configuration | folds | acc 8 per fold | mean |",
                  "|---|---|---|---|"]
        shipped = {f["fold"]: f for f in cv["folds"]} if cv else {}
        for label, rep in compare:
            rows = [(label, rep["folds"])]
            if all(f["fold"] in shipped for f in rep["folds"]):
                rows.insert(0, (f"shipped: {info['features_short']}", [shipped[f["fold"]] for f in rep["folds"]]))
            for name, folds in rows:
                accs = [f["acc8"] for f in folds]
                lines.append(f"| {name} | {', '.join(str(f['fold']) for f in folds)} | "
                             f"{', '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} |")
        lines.append("")
    lines += ["## Shipped model", "",
              f"Trained on all actors except 01 and 04, same settings and epoch count as the CV. Actors 01 and 04 "
              f"(never trained on) as a sanity check: 8-class {r(heldout['fp32_acc8'])}, folded 7-class "
              f"{r(heldout['fp32_acc7'])} (fp32)" + (f"; int8 {r(heldout['int8_acc8'])} / {r(heldout['int8_acc7'])}, "
                                                     f"int8 and fp32 agree on {r(heldout['agreement'])} of the clips"
                                                     if 'int8_acc8' in heldout else "") + ".",
              f"ONNX vs PyTorch: max |logit difference| {info['max_diff']:.2e} on 3 s windows and whole clips.", "",
              f"## Latency: one 3 s window, 1 thread, median of {args.runs}", "", f"CPU: {cpu_name()} "
              "(shared with other jobs while measured: treat as upper bounds).", "",
              "| what | ms |", "|---|---|",
              f"| speech detection, edgeemo.voice.vad (every window, speech or not) | {lat['vad_ms']:.2f} |",
              f"| front-end, edgeemo.voice.features (numpy port) | {lat['features_numpy_ms']:.2f} |"]
    if "features_python_speech_features_ms" in lat:
        lines.append(f"| front-end, python_speech_features itself (same numbers) | "
                     f"{lat['features_python_speech_features_ms']:.2f} |")
    for key, value in lat.items():
        if key.endswith("_total_ms"):
            engine = key[:-len("_total_ms")].replace("_", " ")
            model_ms = lat[key.replace("_total_ms", "_model_ms")]
            lines.append(f"| features + model, {engine} | {value:.2f} (model alone {model_ms:.2f}) |")
    if not int8_kept:
        lines += ["", "int8 was slower than fp32 in onnxruntime here, so no int8 model is shipped."]
    lines += ["", "## Features", "", info["features_note"], "", "## Reproduce", "", "```sh",
              "pip install -e '.[train]' python_speech_features", *info["commands"], "```", ""]
    return "\n".join(lines)


def epochs_text(epochs: str) -> str:
    """'200' -> '200 epochs'; an ensemble's '200+200+200' -> '3 nets of 200 epochs each'."""
    members = epochs.split("+")
    if len(members) == 1:
        return f"{epochs} epochs"
    if len(set(members)) == 1:
        return f"{len(members)} nets of {members[0]} epochs each"
    return " + ".join(f"a net of {e} epochs" for e in members)


def rooms_cell(score: dict) -> str:
    """'69.2 % (83)': the share and, where the result file has it, the count of utterances right."""
    return f"{100 * score['acc7']:.1f} %" + (f" ({score['correct']})" if "correct" in score else "")


def rooms_section(rooms_path: Path, vad_path: Path) -> list[str]:
    """The in-room figures from their result files (tools.eval.voice, tools.eval.vad), if they are there."""
    lines: list[str] = []
    if rooms_path.is_file():
        rooms = json.loads(rooms_path.read_text())
        kinds = ("clean", "pink10", "babble10")
        count = len(rooms["models"])
        together = {1: "The model", 2: "Both models"}.get(count, f"All {count} models")
        lines += ["## In rooms: actors 01 + 04 through `edgeemo detect`", "",
                  "The 120 utterances of the two actors no model here trained on, as WAV files clean, with pink "
                  "noise at 10 dB SNR and with babble of 4 other actors at 10 dB SNR (tools.clips.noisy_speech), "
                  "each read by `edgeemo detect --json` with the model's card; 7 published labels. "
                  f"{together} in one run: `{rooms['command']}` -> `{rooms_path.relative_to(REPO)}`. "
                  "Cards outside `models/` are earlier models: edgeemo-voice-history.md says how to take them "
                  "from git.", "",
                  "| model | clean | pink noise 10 dB | babble 10 dB | ms per 3 s window (VAD + features + model), "
                  "median / min |", "|---|---|---|---|---|"]
        for label, res in rooms["models"].items():
            cost = res.get("window_cost", {})
            lines.append(f"| {label} | " + " | ".join(rooms_cell(res[k]) for k in kinds)
                         + f" | {cost.get('median_ms', float('nan')):.2f} / {cost.get('min_ms', float('nan')):.2f} |")
        lines.append("| acceptance | " + " | ".join(f">= {100 * rooms['acceptance'][k]:.0f} %" for k in kinds)
                     + " | <= 2 |")
        for label, res in rooms["models"].items():
            cost = res.get("window_cost", {}).get("median_ms", float("nan"))
            lines.append(f"| {label}: met? | " + " | ".join("met" if res[k]["acc7"] >= rooms["acceptance"][k] else
                                                           "**NOT met**" for k in kinds)
                         + f" | {'met' if cost <= 2 else '**NOT met**'} |")
        lines.append("")
    if vad_path.is_file():
        vad = json.loads(vad_path.read_text())
        sp = vad["speech_pink_10db"]
        noise = ", ".join(f"{k[6:]} {vad[k]['voice_streams']}" for k in vad if k.startswith("noise_"))
        minutes = next(vad[k]["minutes"] for k in vad if k.startswith("noise_"))
        lines += ["The voice stage's speech detection in the same rooms (`" + vad["command"] + "` -> "
                  f"`{vad_path.relative_to(REPO)}`): {sp['found']} of {sp['utterances']} utterances in pink noise at "
                  f"10 dB SNR give a reading ({100 * sp['share']:.1f} %); voice streams started by {minutes:g} minutes "
                  f"of noise alone: {noise}.", ""]
    return lines


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, nargs="?", default=REPO / "runs" / "voice" / "all" / "final.pt")
    p.add_argument("--cv", type=Path, help="folder of train_voice.py --folds (cv_report.json, fold*/final.pt)")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=DIR",
                   help="another configuration's CV folder, tabulated in the .md (repeatable)")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, default=REPO / "models")
    p.add_argument("--name", default="edgeemo-voice")
    p.add_argument("--calib", type=int, default=256, help="3 s calibration windows for int8")
    p.add_argument("--runs", type=int, default=100, help="latency repetitions")
    p.add_argument("--rooms", type=Path, default=REPO / "bench" / "results" / "voice_rooms.json",
                   help="tools.eval.voice result shown in the .md")
    p.add_argument("--vad", type=Path, default=REPO / "bench" / "results" / "vad_noise.json",
                   help="tools.eval.vad result shown in the .md")
    p.add_argument("--context", type=Path,
                   help="tools.eval.voice_context result: its context and per-segment temperature go into the cards "
                        "(default: bench/results/voice_context.json where it was measured on the --cv folds)")
    p.add_argument("--no-onnx-cv", action="store_true", help="skip re-running the CV folds in onnxruntime")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = load_ravdess(data_root(args.data))
    model, ckpt, front = load_checkpoint(args.checkpoint)
    frames = front.frames(3 * front.sample_rate)
    fp32, int8 = args.out / f"{args.name}.onnx", args.out / f"{args.name}-int8.onnx"

    print(f"1. exporting {args.checkpoint} -> {fp32}", flush=True)
    export_onnx(model, fp32, front.n_features, frames)
    heldout_idx = np.flatnonzero(np.isin(data["speakers"], SHIPPED_EXCLUDED))
    probe = windows(data, list(SHIPPED_EXCLUDED), front, 32, seed=1)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(probe)).numpy()
        torch_clips = np.concatenate([model(torch.from_numpy(front.features(clip_audio(data, i))[None])).numpy()
                                      for i in heldout_idx[:20]])
    fp32_infer = ort_infer(fp32)
    max_diff = max(np.abs(fp32_infer(probe) - torch_logits).max(),
                   np.abs(clip_logits(fp32_infer, data, heldout_idx[:20], front) - torch_clips).max())
    print(f"   onnxruntime vs PyTorch: max |logit diff| {max_diff:.2e}", flush=True)
    if max_diff > 1e-3:
        raise SystemExit("onnxruntime disagrees with PyTorch: not writing cards")

    print(f"2. int8: calibrating on {args.calib} windows of actors {ckpt['train_actors']}", flush=True)
    quant = quantize(fp32, int8, windows(data, ckpt["train_actors"], front, args.calib))
    int8_infer = ort_infer(int8)
    y_held = data["labels"][heldout_idx]
    heldout = {}
    for kind, infer in (("fp32", fp32_infer), ("int8", int8_infer)):
        logits = clip_logits(infer, data, heldout_idx, front)
        m = metrics(logits, y_held)
        heldout |= {f"{kind}_acc8": m["acc8"], f"{kind}_acc7": m["acc7"], f"{kind}_pred": logits.argmax(1)}
    heldout["agreement"] = float(np.mean(heldout.pop("fp32_pred") == heldout.pop("int8_pred")))
    print(f"   actors 01+04: fp32 acc8 {heldout['fp32_acc8']:.3f}, int8 acc8 {heldout['int8_acc8']:.3f}, "
          f"agreement {heldout['agreement']:.3f}", flush=True)

    cv = cv_md = onnx_cv_ = None
    if args.cv:
        # the calibration of the readings with context (tools.eval.voice_context) where it was measured on these
        # folds, else of the folds' whole-clip logits: an older cv_report.json has only in-sample figures
        context = speech_context(args.context or DEFAULT_CONTEXT, args.cv, strict=args.context is not None)
        cv = json.loads((args.cv / "cv_report.json").read_text()) | (context or cv_figures(held_out(args.cv, args.data)))
        cv_md = (args.cv / "cv_report.md").read_text()
        shutil.copyfile(args.cv / "cv_confusion8.png", args.out / f"{args.name}-confusion.png")
        if not args.no_onnx_cv:
            print("3. CV folds through onnxruntime, fp32 and int8", flush=True)
            onnx_cv_ = onnx_cv(args.cv, data, args.calib, cv["folds"])
    compare = [(label, json.loads((Path(d) / "cv_report.json").read_text()))
               for label, d in (c.split("=", 1) for c in args.compare)]

    print("4. latency, 1 thread", flush=True)
    audio = clip_audio(data, int(heldout_idx[0]))
    audio = np.pad(audio, (0, max(0, 3 * front.sample_rate - len(audio))))[:3 * front.sample_rate]
    engines = {"onnxruntime_fp32": fp32_infer, "onnxruntime_int8": int8_infer,
               "openvino_fp32": openvino_infer(fp32), "openvino_int8": openvino_infer(int8)}
    lat = latency(front, engines, audio, args.runs)
    print("   " + json.dumps(lat), flush=True)
    int8_kept = lat["onnxruntime_int8_model_ms"] <= lat["onnxruntime_fp32_model_ms"]  # same features in both
    int8_card_path = args.out / f"{args.name}-int8.json"

    command = ckpt.get("command", "python -m tools.train.voice --fold all")
    export_cmd = "python -m tools.export.voice " + shlex.join(sys.argv[1:])
    training = {"cv_command": cv["command"], "epochs": cv["epochs"]} if cv else {}
    for kind, path, card_path in (("fp32", fp32, args.out / f"{args.name}.json"), ("int8", int8, int8_card_path)):
        if kind == "int8" and not int8_kept:
            path.unlink(missing_ok=True)
            card_path.unlink(missing_ok=True)
            continue
        card_metrics_ = card_metrics(cv, lat, f"onnxruntime_{kind}", heldout, onnx_cv_, kind, args.runs)
        extra = {"export": export_cmd, "training": dict(training)} | ({"quantization": quant} if kind == "int8" else {})
        if cv and cv["temperature_kept"]:  # fitted on the CV folds' held-out actors (voice_calibration or voice_context)
            extra["temperature"] = cv["temperature"]
        if cv and "context" in cv:
            extra["context_s"] = cv["context_s"]
        write_json(card_path, make_card(card_path.stem, path.name, front, card_metrics_, command, extra))
    evals = [json.loads(path.read_text())["command"] for path in (args.rooms, args.vad) if path.is_file()]
    commands = [*(cv["command"].split("\n") if cv else []), *(rep["command"] for _, rep in compare),
                *ckpt.get("commands", [command]),  # an ensemble's: its members', already in its CV command
                *([cv["context"]["command"]] if cv and "context" in cv else []), export_cmd,
                *evals, *([export_cmd + "   # again: the card's rooms table reads tools.eval.voice's result"]
                          if evals else []),
                "python -m pytest tests/test_voice_features.py tests/test_voice.py tests/test_microphone.py"]
    commands = list(dict.fromkeys(commands))
    info = {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model, frames),
            "members": len(getattr(model, "members", [model])),
            "features": front.n_features, "max_diff": float(max_diff), "commands": commands,
            "room_copies": int(ckpt.get("args", {}).get("noise_copies", 0)),  # 0: trained before issue 24
            "p_clean": float(ckpt.get("args", {}).get("p_clean", 0.3)),
            "p_cut": float(ckpt.get("args", {}).get("p_cut", 0.0)),
            "features_note": features_note(front, lat),
            "features_short": f"{front.n_features} {front.kind}{' + deltas' if front.use_deltas else ''}, "
                              f"{front.normalisation}"}
    (args.out / f"{args.name}.md").write_text(markdown(args, cv, cv_md or "", onnx_cv_, lat, heldout, info,
                                                       int8_kept, compare))
    print(f"wrote {args.out / (args.name + '.json')}" + (f", {int8_card_path}" if int8_kept else "")
          + f", {args.out / (args.name + '.md')}", flush=True)


if __name__ == "__main__":
    main()
