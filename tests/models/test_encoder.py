"""tfseg.models.encoder: one rule for the encoder layers of every model family."""
import keras
import pytest

from tfseg.errors import ConfigError
from tfseg.models import resunet, segresnet, segresnet_vae, set_encoder_trainable, unet
from tfseg.models.encoder import ENCODER_PREFIX, encoder_layers, is_encoder_layer


def test_segresnet_encoder_is_the_stem_and_the_down_levels():
    model = segresnet((16, 16, 16, 2), init_filters=8, blocks_down=(1, 1), blocks_up=(1,))
    names = {layer.name for layer in encoder_layers(model)}
    assert names and all(n.startswith(("stem_", "enc0_", "enc1_")) for n in names)
    assert {"stem_conv", "enc1_down"} <= names
    assert not any(n.startswith(("dec", "head", "probabilities")) for n in names)
    before = len(model.trainable_weights)
    assert set_encoder_trainable(model, False) == len(names)
    frozen = sum(len(layer.trainable_weights) for layer in model.layers if layer.name in names)
    assert frozen == 0 and len(model.trainable_weights) < before
    set_encoder_trainable(model, True)
    assert len(model.trainable_weights) == before


def test_vae_branch_is_not_encoder():
    model = segresnet_vae((16, 16, 16, 1), init_filters=8, blocks_down=(1, 1), blocks_up=(1,), vae_latent=4)
    assert not any(layer.name.startswith("vae") for layer in encoder_layers(model))


def test_unet_family_uses_the_prefix():
    for model in (unet((32, 32, 1), encoder="resnet18", decoder_filters=(4, 4, 4, 4, 4)),
                  resunet((32, 32, 1), filters=(4, 8, 8, 8), bridge_filters=8)):
        layers = encoder_layers(model)
        assert layers and all(layer.name.startswith(ENCODER_PREFIX) for layer in layers)
        assert len(layers) == sum(layer.name.startswith(ENCODER_PREFIX) for layer in model.layers)


def test_names_and_errors():
    assert [is_encoder_layer(n) for n in ("encoder_x", "enc12_block0", "stem_dropout", "encoding", "decoder_1")] \
        == [True, True, True, False, False]
    with pytest.raises(ConfigError, match="no encoder layers"):
        set_encoder_trainable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), False)
