"""Export a trained face-expression checkpoint to ONNX and write its model card.

    python -m tools.export.face runs/edge/best.pt --crop runs/crop.json
        -> models/edgeemo-face.onnx + models/edgeemo-face.json

The card carries everything the daemon needs to feed the model (labels in output order, input size,
colour, scale/mean/std, eye-aligned crop), all taken from the checkpoint and from
tools/export/measure_crop.py, so no preprocessing constant lives in daemon code. The ONNX file is checked
against PyTorch through onnxruntime on card-preprocessed random faces before the card is written.
Metrics already in an existing card are kept (tools/eval/face.py --update-card re-measures them);
a warning says when they were measured on a different ONNX file.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from tools.train.teachers import TEACHERS_FILE
from torch import nn
from tools.common.datasets import REPO
from tools.eval.face import ort_session, sha256, write_json
from tools.train.face_nets import build, count_macs

from edgeemo.core.modelcard import parse_card, to_tensor

OPSET = 17
LICENCE = "Apache-2.0 (weights trained by edgeemo on FER-2013, research data: see card)"
DATA_NOTE = ("FER-2013 Training split (28,709 48x48 gray faces, Goodfellow et al. 2013, Kaggle/ICML 2013 "
             "challenge data, research use); model selected on PublicTest; PrivateTest and FER+ Test held out. "
             "The weights are ours; the training images keep their own terms.")


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and the checkpoint dict written by tools/train/face.py."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build(ckpt["arch"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def input_channels(model: nn.Module) -> int:
    """Channels of the first convolution: what the network was trained on."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


def export_onnx(model: nn.Module, path: Path, size: tuple[int, int], channels: int) -> None:
    """ONNX with input `input` [batch,C,H,W] and output `logits` [batch,classes], batch dynamic.

    The TorchScript exporter (dynamo=False) folds BatchNorm into the convolutions and gives the
    plain Conv/Relu/MaxPool/Gemm graph that onnxruntime's quantizer and OpenVINO handle best. (The
    dynamo exporter gives the same graph in torch 2.13, but takes 20x longer, only implements opset
    18 and converts down, and prints pages of progress.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, channels, *size)
    with warnings.catch_warnings():  # its deprecation notices are expected: see above
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(), (dummy,), str(path), input_names=["input"], output_names=["logits"],
            opset_version=OPSET, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True, dynamo=False,
        )


def random_faces(card_raw: dict, n: int, seed: int = 0) -> np.ndarray:
    """Random uint8 crops in the card's size/colour, fed through the card like real faces."""
    card = parse_card(card_raw, Path("."))
    shape = (n, *card.size) + ((card.channels,) if card.channels == 3 else ())
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return to_tensor(card, pixels)


@torch.no_grad()
def max_abs_diff(model: nn.Module, onnx_path: Path, x: np.ndarray) -> float:
    """Largest |PyTorch - onnxruntime| output difference on `x`, batch 1 and the whole batch."""
    session = ort_session(onnx_path)
    diff = 0.0
    for batch in (x[:1], x):
        ours = session.run(None, {"input": np.ascontiguousarray(batch)})[0]
        ref = model.eval()(torch.from_numpy(np.ascontiguousarray(batch))).numpy()
        diff = max(diff, float(np.abs(ours - ref).max()))
    return diff


def training_command(args: dict) -> str:
    """The train/face command line, rebuilt from the arguments stored in the checkpoint.

    A run that started from another's weights (--init) is preceded by that run's command, as far
    back as those checkpoints are at hand, so the card holds the whole chain.
    """
    parts = ["python", "-m", "tools.train.face"]
    for key, value in args.items():
        # The data path is machine-specific (training.data describes it); a time budget was
        # already turned into the stored --epochs; distillation settings mean nothing without teachers.
        if value in (None, []) or key in ("data", "budget_s", "teacher") or (
                key.startswith("kd_") or key == "ferplus_weight") and not args.get("targets"):
            continue
        if key == "targets" and Path(value).parts[-2:] == TEACHERS_FILE.parts:
            value = []  # the shared teachers file in whatever data directory: --targets alone names it
        values = value if isinstance(value, list) else [value]
        parts += [f"--{key.replace('_', '-')}", *map(str, values)]
    command = " ".join(parts)
    init = args.get("init")
    if init and Path(init).is_file():
        parent = torch.load(init, map_location="cpu", weights_only=True).get("args", {})
        return f"{training_command(parent)} && {command}"
    return command


def crop_block(crop_json: Path | None, existing: dict | None) -> dict:
    """Crop geometry: measured (tools/export/measure_crop.py JSON), else the existing card's, else a rough guess."""
    if crop_json is not None:
        m = json.loads(Path(crop_json).read_text())
        return {"eye_center": [round(v, 4) for v in m["eye_center"]], "eye_distance": round(m["eye_distance"], 4),
                "rotate": True, "measured": {k: v for k, v in m.items() if k not in ("eye_center", "eye_distance")}}
    if existing and "crop" in existing:
        return existing["crop"]
    return {"eye_center": [0.5, 0.4], "eye_distance": 0.42, "rotate": True,
            "measured": "no: a rough guess until tools/export/measure_crop.py is run (pass --crop)"}


def make_card(name: str, ckpt: dict, model: nn.Module, crop: dict, metrics: dict) -> dict:
    """The card contract, filled from the checkpoint; tensor = (pixels * scale - mean) / std."""
    channels = input_channels(model)
    if channels != 1:
        raise SystemExit(f"{ckpt['arch']} takes {channels} channels; the FER training pipeline is gray only")
    size = int(ckpt["size"])
    val = ckpt.get("val") or {}
    return {
        "name": name,
        "task": "face-expression",
        "file": f"{name}.onnx",
        "labels": list(ckpt["labels"]),
        "output": "logits",
        "input": {"name": "input", "layout": "NCHW", "size": [size, size], "channels": channels, "color": "gray",
                  "scale": 1 / 255, "mean": [float(ckpt["mean"])] * channels, "std": [float(ckpt["std"])] * channels},
        "crop": crop,
        "metrics": metrics,
        "licence": LICENCE,
        "training": {
            "command": training_command(ckpt.get("args", {})),
            "data": DATA_NOTE,
            "architecture": ckpt["arch"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "macs_per_face": count_macs(model, size),
            "epoch": ckpt.get("epoch"),
            "publictest_acc_at_selection": val.get("val_acc"),
        },
    }


def export(model: nn.Module, ckpt: dict, out_dir: Path, name: str, crop_json: Path | None = None) -> tuple[Path, float]:
    """Write <out_dir>/<name>.onnx and .json; returns the card path and the PyTorch-vs-ONNX difference."""
    onnx_path, card_path = out_dir / f"{name}.onnx", out_dir / f"{name}.json"
    existing = json.loads(card_path.read_text()) if card_path.exists() else None
    metrics = (existing or {}).get("metrics", {})
    card = make_card(name, ckpt, model, crop_block(crop_json, existing), metrics)
    export_onnx(model, onnx_path, tuple(card["input"]["size"]), card["input"]["channels"])
    diff = max_abs_diff(model, onnx_path, random_faces(card, 8))
    print(f"PyTorch vs onnxruntime: max abs diff {diff:.2e} on 8 random faces")
    if diff >= 1e-4:
        raise SystemExit(f"{onnx_path}: outputs differ from PyTorch by {diff:.2e} (>= 1e-4); card not written")
    if metrics.get("onnx_sha256") not in (None, sha256(onnx_path)):
        print(f"warning: the metrics kept in {card_path} were measured on another ONNX file; "
              f"re-run tools/eval/face.py {card_path} --update-card")
    write_json(card_path, card)
    return card_path, diff


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="best.pt / last.pt from tools/train/face.py")
    p.add_argument("--name", default="edgeemo-face", help="model name: writes <out>/<name>.onnx and .json")
    p.add_argument("--out", type=Path, default=REPO / "models", help="output folder (default: models/)")
    p.add_argument("--crop", type=Path, help="crop JSON from tools/export/measure_crop.py --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    model, ckpt = load_checkpoint(args.checkpoint)
    print(f"{args.checkpoint}: {ckpt['arch']}, epoch {ckpt.get('epoch')}, labels {ckpt['labels']}")
    card_path, _ = export(model, ckpt, args.out, args.name, args.crop)
    print(f"wrote {card_path.with_suffix('.onnx')} ({os.path.getsize(card_path.with_suffix('.onnx'))} bytes) "
          f"and {card_path}")


if __name__ == "__main__":
    main()
