"""Transforms as TensorFlow ops: intensity, spatial, labels."""
