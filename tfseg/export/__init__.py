"""Model export: SavedModel for TF Serving (ONNX and TensorRT to come)."""
