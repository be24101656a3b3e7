"""Which layers of a model are its encoder, and freezing them (the fine-tuning warm-up).

One rule for every model family of `tfseg.models`, by layer name, so it also works on a model
loaded back from a `.keras` file (the `trainable` flags are saved with it):

- U-Net family (`unet`, `unet_plus_plus`, `resunet`): every layer named `encoder_...`
  (`ENCODER_PREFIX`; the keras.applications encoders get the prefix too);
- SegResNet (`segresnet`, `segresnet_vae`, 2D and 3D): the stem (`stem_...`) and the
  down-sampling levels (`enc0_...`, `enc1_...`).

Example:
    >>> from tfseg.models import segresnet
    >>> model = segresnet((16, 16, 1), init_filters=8, blocks_down=(1, 1), blocks_up=(1,), spatial_dims=2)
    >>> set_encoder_trainable(model, False) == len(encoder_layers(model)) > 0
    True
    >>> all(layer.trainable for layer in model.layers if layer.name.startswith("dec"))
    True
"""
import logging
import re

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["ENCODER_PREFIX", "encoder_layers", "is_encoder_layer", "set_encoder_trainable"]

#: Name prefix of the encoder layers of the U-Net family.
ENCODER_PREFIX = "encoder_"

_ENCODER_NAME = re.compile(rf"^({re.escape(ENCODER_PREFIX)}|stem_|enc\d+_)")


def is_encoder_layer(name):
    """True for the name of an encoder layer (`encoder_...`, `stem_...`, `enc<level>_...`).

    Example:
        >>> [is_encoder_layer(n) for n in ("encoder_conv1", "enc2_down", "stem_conv", "dec1_up", "head_conv")]
        [True, True, True, False, False]
    """
    return bool(_ENCODER_NAME.match(name))


def encoder_layers(model):
    """The encoder layers of a tfseg model, in the model's layer order (see the module docstring)."""
    return [layer for layer in model.layers if is_encoder_layer(layer.name)]


def set_encoder_trainable(model, trainable=True):
    """Freeze (`trainable=False`) or unfreeze the encoder of a tfseg model.

    Recompile the model afterwards: Keras fixes the trainable weights at `compile`.

    Args:
        model: a model from `unet`, `unet_plus_plus`, `resunet`, `segresnet` or `segresnet_vae`
            (or any model that names its encoder layers the same way).
        trainable: the new flag of every encoder layer.

    Returns:
        The number of encoder layers changed.

    Raises:
        ConfigError: if the model has no encoder layers.
    """
    layers = encoder_layers(model)
    if not layers:
        raise ConfigError(f"model {model.name!r} has no encoder layers (no layer name starts with "
                          f"{ENCODER_PREFIX!r}, 'stem_' or 'enc<level>_'); set_encoder_trainable needs a unet, "
                          "unet_plus_plus, resunet or segresnet model")
    for layer in layers:
        layer.trainable = bool(trainable)
    logger.info("%s: %d encoder layers %s", model.name, len(layers), "trainable" if trainable else "frozen")
    return len(layers)
