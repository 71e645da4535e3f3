"""Static int8 quantization of an exported face-expression model, with its own card.

    python -m tools.export.quantize_face models/edgeemo-face.json          # -> models/edgeemo-face-int8.onnx/.json
    python -m tools.eval.face models/edgeemo-face.json models/edgeemo-face-int8.json --update-card

onnxruntime's quantize_static in QDQ format with per-channel weights, so the same file runs int8 in
onnxruntime and OpenVINO. Activation ranges are calibrated on `--calib` FER-2013 *Training* faces
(stratified by label; the test splits stay unseen), fed through edgeemo.core.modelcard.to_tensor from the
card exactly like the daemon feeds crops. The int8 card keeps the fp32 card's preprocessing and crop,
points "file" at the int8 model and records how it was made under "quantization". The OpenVINO check
at the end makes sure the QDQ graph loads there and agrees with onnxruntime.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from tools.common.datasets import data_root, load_fer
from tools.eval.face import fer_tensors, ort_session, run_batches, sha256, write_json

from edgeemo.core.modelcard import ModelCard, load_card

METHODS = ("minmax", "percentile", "entropy")
ACTIVATIONS = ("uint8", "int8")


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` indices drawn per class in proportion to the class sizes (at least one each), sorted."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = np.maximum(1, np.floor(n * counts / counts.sum()).astype(int))
    for i in np.argsort(-counts)[: max(0, n - share.sum())]:  # hand the rounding remainder to big classes
        share[i] += 1
    picks = [rng.choice(np.flatnonzero(labels == c), min(k, cnt), replace=False)
             for c, k, cnt in zip(classes, share, counts)]
    return np.sort(np.concatenate(picks))


def calibration_reader(input_name: str, tensors: np.ndarray, batch: int = 32):
    """A CalibrationDataReader over preprocessed input tensors [N,C,H,W] (any source: FER or synthetic)."""
    from onnxruntime.quantization import CalibrationDataReader

    class ArrayReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict | None:
            if self.start >= len(tensors):
                return None
            chunk = np.ascontiguousarray(tensors[self.start:self.start + batch], dtype=np.float32)
            self.start += batch
            return {input_name: chunk}

        def rewind(self) -> None:
            self.start = 0

    return ArrayReader()


def pre_process(src: Path, dst: Path) -> bool:
    """Shape inference + graph optimisation before quantizing (recommended by onnxruntime); False if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
        return True
    except Exception as exc:  # the plain model still quantizes; only say why the step was skipped
        print(f"quant_pre_process skipped: {exc}")
        return False


def float_stem(src: Path, dst: Path) -> list[str]:
    """Write `src` with its stem reordered for float execution; returns the stem's node names.

    The stem is the first convolution on the one-channel input, then ReLU, then max-pooling. With
    one input channel each output pixel is a 9-term dot product, which onnxruntime's int8
    convolution handles badly: on our AVX2 CPU it cost 153 us per face against 32 us for the fp32
    NCHWc kernel, 15 % of the whole int8 net. So the stem stays fp32 and is quantized after the
    pool, on a map 4x smaller. ReLU and max-pooling commute (ReLU is monotonic), so putting the pool
    first is the same function, and it lets the fp32 pool run in the NCHWc layout beside the conv.
    Returns [] and writes nothing if the graph does not start that way.
    """
    import onnx

    model = onnx.load(str(src))
    nodes = list(model.graph.node)
    if len(nodes) < 3 or [n.op_type for n in nodes[:3]] != ["Conv", "Relu", "MaxPool"]:
        return []
    conv, relu, pool = nodes[:3]
    if conv.input[0] != model.graph.input[0].name or relu.input[0] != conv.output[0] \
            or pool.input[0] != relu.output[0] or len(pool.output) != 1:
        return []
    pooled_out = pool.output[0]
    pool.input[0], pool.output[0] = conv.output[0], relu.output[0]
    relu.input[0], relu.output[0] = pool.output[0], pooled_out
    del model.graph.node[:]
    model.graph.node.extend([conv, pool, relu, *nodes[3:]])
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return [conv.name, pool.name, relu.name]


def quantize(fp32: Path, int8: Path, calib: np.ndarray, input_name: str,
             method: str = "minmax", activations: str = "uint8", reduce_range: bool = True) -> dict:
    """Quantize `fp32` into `int8` using `calib` tensors; returns the notes that go into the card.

    `reduce_range` keeps weights to 7 bits. On CPUs without VNNI (AVX2 only, like our EPYC edge
    VM) onnxruntime multiplies u8 activations by s8 weights with VPMADDUBSW, whose int16 pair sums
    saturate: measured on the edge net, full-range weights gave 3-4x the output error of
    reduce_range (and disagreed with OpenVINO on ~6 % of faces), at the same speed.
    The one-channel stem stays fp32 (see float_stem).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    act_type = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[activations]
    with tempfile.TemporaryDirectory() as tmp:
        reordered, source = Path(tmp) / "stem.onnx", Path(tmp) / "pre.onnx"
        stem = float_stem(fp32, reordered)
        start = reordered if stem else fp32
        preprocessed = pre_process(start, source)
        quantize_static(
            str(source if preprocessed else start), str(int8), calibration_reader(input_name, calib),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=act_type,
            weight_type=QuantType.QInt8, reduce_range=reduce_range, calibrate_method=calibrate,
            nodes_to_exclude=stem,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    import onnxruntime

    return {"tool": f"onnxruntime.quantization.quantize_static (onnxruntime {onnxruntime.__version__})",
            "format": "QDQ", "float_nodes": stem,
            "weights": "int8, symmetric, per channel" + (", 7-bit range (reduce_range)" if reduce_range else ""), "activations": f"{activations}, per tensor",
            "calibration_method": method, "calibration_images": int(len(calib)),
            "quant_pre_process": preprocessed, "source": fp32.name, "source_sha256": sha256(fp32)}


def argmax_of(card: ModelCard, path: Path, x: np.ndarray) -> np.ndarray:
    return run_batches(ort_session(path), card, x).argmax(1)


def openvino_argmax(path: Path, x: np.ndarray) -> np.ndarray:
    """Argmax from OpenVINO CPU (one thread), to prove the QDQ model loads and computes the same there."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1})
    return np.concatenate([compiled(np.ascontiguousarray(x[i:i + 1]))[0].argmax(1) for i in range(len(x))])


def int8_card(fp32_raw: dict, name: str, notes: dict, existing: dict | None) -> dict:
    """The fp32 card with the int8 file, the quantization notes and (if any) the int8 card's old metrics.

    Not the fp32 card's flip_margin: that was chosen for the fp32 model's outputs
    (eval_face.py --select-flip-margin chooses one for the int8 model).
    """
    card = copy.deepcopy(fp32_raw)
    card.pop("flip_margin", None)
    card.update(name=name, file=f"{name}.onnx", quantization=notes, metrics=(existing or {}).get("metrics", {}))
    return card


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("card", type=Path, help="the fp32 model card, e.g. models/edgeemo-face.json")
    p.add_argument("--data", help="data directory (default: $EDGEEMO_DATA or ../shared/data)")
    p.add_argument("--calib", type=int, default=512, help="calibration faces from FER-2013 Training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=METHODS, default="minmax", help="activation range calibration")
    p.add_argument("--activations", choices=ACTIVATIONS, default="uint8", help="activation integer type")
    p.add_argument("--full-range", action="store_true",
                   help="8-bit weights (only for CPUs with VNNI; see quantize() on AVX2 saturation)")
    p.add_argument("--name", help="int8 model name (default: <fp32 name>-int8)")
    p.add_argument("--check", type=int, default=256, help="other Training faces for the fp32/OpenVINO checks")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    card = load_card(args.card)
    name = args.name or f"{card.name}-int8"
    int8_path, int8_card_path = args.card.parent / f"{name}.onnx", args.card.parent / f"{name}.json"

    images, labels = load_fer(data_root(args.data), "Training")
    calib_idx = stratified_indices(labels, args.calib, args.seed)
    rest = np.setdiff1d(np.arange(len(labels)), calib_idx)
    check_idx = np.random.default_rng(args.seed + 1).choice(rest, min(args.check, len(rest)), replace=False)
    calib, check = fer_tensors(card, images[calib_idx]), fer_tensors(card, images[check_idx])
    print(f"calibrating {card.name} on {len(calib)} Training faces, classes {np.bincount(labels[calib_idx])}, "
          f"method {args.method}, activations {args.activations}", flush=True)

    notes = quantize(card.path, int8_path, calib, card.input_name, args.method, args.activations,
                     reduce_range=not args.full_range)
    notes["calibration_data"] = (f"FER-2013 Training, {len(calib)} faces stratified by label (seed {args.seed}), "
                                 "preprocessed with edgeemo.core.modelcard.to_tensor from the fp32 card")
    notes["command"] = shlex.join(["python", "-m", "tools.export.quantize_face", *(sys.argv[1:] if argv is None else argv)])

    ort_int8 = argmax_of(card, int8_path, check)
    fp32_agree = float(np.mean(argmax_of(card, card.path, check) == ort_int8))
    ov_agree = float(np.mean(openvino_argmax(int8_path, check) == ort_int8))
    print(f"argmax agreement on {len(check)} other Training faces: int8 vs fp32 {fp32_agree:.3f}, "
          f"OpenVINO vs onnxruntime (int8) {ov_agree:.3f}")
    notes["checks"] = {"faces": len(check), "argmax_agreement_int8_vs_fp32": round(fp32_agree, 4),
                       "argmax_agreement_openvino_vs_onnxruntime": round(ov_agree, 4)}

    existing = json.loads(int8_card_path.read_text()) if int8_card_path.exists() else None
    write_json(int8_card_path, int8_card(card.raw, name, notes, existing))
    size = lambda p: p.stat().st_size // 1024  # noqa: E731
    print(f"wrote {int8_path} ({size(int8_path)} KiB, fp32 {size(card.path)} KiB) and {int8_card_path}")
    if existing and existing.get("metrics"):
        print(f"note: kept the old metrics in {int8_card_path}; re-run tools/eval/face.py --select-flip-margin "
              "--update-card")
    if ov_agree < 0.95:
        raise SystemExit(f"OpenVINO disagrees with onnxruntime on {100 * (1 - ov_agree):.0f} % of faces")


if __name__ == "__main__":
    main()
