"""From a checkpoint to a shipped model: ONNX export, int8 quantization, crop geometry, the model card."""
