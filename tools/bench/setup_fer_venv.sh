#!/usr/bin/env bash
# Create .venv-fer/ (git-ignored) with the `fer` PyPI package, for tools/bench/fer_baseline.py and
# `tools/bench/pipeline.py --vs-fer`. It is kept apart from the project's environment because fer pulls in
# TensorFlow, and its declared dependencies clash with ours.
#
#     tools/bench/setup_fer_venv.sh            # PYTHON=python3.11 tools/bench/setup_fer_venv.sh to pick the interpreter
#
# What fer 25.10.3 needs, and why it is installed with --no-deps:
#   * `from fer.fer import FER` imports cv2, numpy, requests, PIL, pkg_resources and tensorflow
#     (tf.lite.Interpreter runs its default model, data/emotion_model_quantized.tflite, 64x64 gray;
#     faces come from OpenCV's Haar cascade, cv2.data.haarcascades).
#   * Its declared dependencies also include facenet-pytorch (only for FER(mtcnn=True)), which drags
#     in torch + torchvision with the CUDA wheels (several GB), moviepy / ffmpeg-python / pandas /
#     matplotlib (only for fer.classes.Video), and opencv-contrib-python, the GUI build, which
#     needs libGL and overwrites the cv2 of the headless build in the same site-packages.
#   * pkg_resources is gone from setuptools 81 on, hence setuptools<81.
#   * tf.lite.Interpreter is deprecated in favour of LiteRT (ai-edge-litert) but still ships with
#     TensorFlow 2.21; TF_SPEC pins the release this was tested with (override: TF_SPEC='tensorflow==2.x').
# So we install fer itself without dependencies, then exactly what FER() with its defaults imports.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-fer}
TF_SPEC=${TF_SPEC:-tensorflow==2.21.0}

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --no-deps "fer==25.10.3"
"$VENV/bin/python" -m pip install -q "opencv-contrib-python-headless<5" "$TF_SPEC" \
    "setuptools<81" requests Pillow
TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" - <<'EOF'
import cv2, tensorflow as tf
from fer.fer import FER
FER()  # loads the Haar cascade and the TFLite model
print(f"fer OK: tensorflow {tf.__version__}, opencv {cv2.__version__}")
EOF
