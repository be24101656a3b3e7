"""Segmentation models: builders returning functional `keras.Model`s, and a registry of them by name.

Importing this package imports every model family, which registers its builders, so
`build_model({"name": "fcn8s", ...})` works after `import tfseg.models`.

Example:
    >>> from tfseg.models import build_model
    >>> build_model("fcn8s", input_shape=(64, 64, 1), width=0.125, fc_units=8).output_shape
    (None, 64, 64, 2)
"""
from tfseg.models.registry import build_model, get_builder, list_models, register_model
from tfseg.models.fcn import fcn8s, fcn_alexnet
from tfseg.models.segresnet import inference_model, segresnet, segresnet_vae
from tfseg.models.resunet import resunet
from tfseg.models.encoder import set_encoder_trainable
from tfseg.models.sequence import slice_sequence_classifier
from tfseg.models.unet import unet, unet_plus_plus

__all__ = ["build_model", "fcn8s", "fcn_alexnet", "get_builder", "inference_model", "list_models", "register_model",
           "resunet", "segresnet", "segresnet_vae", "set_encoder_trainable", "slice_sequence_classifier", "unet",
           "unet_plus_plus"]
