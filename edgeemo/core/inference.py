"""One small interface over the two inference back-ends (onnxruntime and OpenVINO)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model file that is missing, corrupt or does not fit its card."""


class InferenceModel:
    """Runs one ONNX model on the CPU with a fixed number of threads, outputs in a fixed order."""

    def __init__(self, path: Path, backend: str = "onnxruntime", threads: int = 1) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} not found")
        self.path, self.backend = path, backend
        try:
            if backend == "openvino":
                self._init_openvino(threads)
            else:
                self._init_onnxruntime(threads)
        except ModelError:
            raise
        except Exception as exc:  # the runtimes raise their own, varied types for a bad file
            raise ModelError(f"cannot load model {path} with {backend}: {str(exc).strip()[:300]}") from None

    def _init_onnxruntime(self, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn a core between calls: at video rates that costs more CPU than the work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_shape = dims(self._session.get_inputs()[0].shape)
        self.output_shapes = [dims(o.shape) for o in self._session.get_outputs()]
        self._run = lambda x: self._session.run(self.output_names, {self.input_name: x})

    def _init_openvino(self, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ModelError(f"cannot load model {self.path}: the config asks for backend: openvino, which is not "
                             "installed (pip install 'edgeemo[openvino]'), or set backend: onnxruntime") from None

        core = ov.Core()
        model = core.read_model(str(self.path))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                     "PERFORMANCE_HINT": "LATENCY"})
        self.input_name = readable_name(compiled.inputs[0].get_names())
        self.output_names = [readable_name(o.get_names()) for o in compiled.outputs]
        self.input_shape = dims(compiled.inputs[0].get_partial_shape())
        self.output_shapes = [dims(o.get_partial_shape()) for o in compiled.outputs]
        request = compiled.create_infer_request()
        outputs = list(compiled.outputs)

        def run(x: np.ndarray) -> list[np.ndarray]:
            result = request.infer({0: x})
            return [result[o] for o in outputs]

        self._run = run

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self._run(x)

    def describe(self) -> str:
        """What the model takes and gives, for a message: `input [batch, 1, 48, 48] -> logits [batch, 7]`."""
        outputs = ", ".join(f"{name} {shape_text(shape)}" for name, shape in
                            zip(self.output_names[:4], self.output_shapes))
        more = f" and {len(self.output_names) - 4} more" if len(self.output_names) > 4 else ""
        return f"{self.input_name} {shape_text(self.input_shape)} -> {outputs}{more}"

    def refuse(self, role: str, problem: str) -> ModelError:
        """The one line for a model that does not fit its contract (`role`: the key, or the card)."""
        return ModelError(f"{role}: {self.path} {problem} (the model: {self.describe()})")


def dims(shape: object) -> tuple[int | None, ...]:
    """A tensor shape with its named or dynamic dimensions as None."""
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
        elif hasattr(d, "is_static"):  # OpenVINO's Dimension
            out.append(d.get_length() if d.is_static else None)
        else:
            out.append(None)
    return tuple(out)


def shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def fits(shape: tuple[int | None, ...], expected: tuple[int | None, ...]) -> bool:
    """Same rank, and every fixed dimension of both the same (None matches anything)."""
    return len(shape) == len(expected) and all(a is None or b is None or a == b for a, b in zip(shape, expected))


def readable_name(names: set[str]) -> str:
    """OpenVINO keeps every alias of a tensor (`{'291', 'cls_8'}`); the ONNX output name is the readable one."""
    return sorted(names, key=lambda n: (n.isdigit(), n))[0]
