"""A tiny BraTS-style run folder, as the BraTS workflow writes it: `model.keras` (the two-output
SegResNet-VAE training model, saved with its optimizer) and `saved_model/` (the segmentation path
with the run's serving spec)."""
import os


def write_run_folder(folder):
    """Write the run into `folder`; returns the `ServingSpec` it used."""
    import keras

    from tfseg.export.savedmodel import ServingSpec, export_savedmodel
    from tfseg.models import build_model
    from tfseg.models.segresnet import inference_model
    from tfseg.utils.atomic import atomic_save_model

    keras.utils.set_random_seed(0)
    model = build_model({"name": "segresnet_vae", "input_shape": (16, 16, 16, 4), "num_classes": 3,
                         "init_filters": 8, "blocks_down": (1, 1), "blocks_up": (1,), "vae_latent": 8})
    model.optimizer = keras.optimizers.Adam(1e-3)
    model.optimizer.build(model.trainable_variables)
    os.makedirs(folder, exist_ok=True)
    atomic_save_model(model, os.path.join(folder, "model.keras"))
    spec = ServingSpec(stride=2, in_channels=4, normalization="zscore_nonzero", activation="sigmoid",
                       class_names=("WT", "TC", "ET"), label_map="brats", extra={"workflow": "brats"})
    network = inference_model(model, input_shape=(None, None, None, 4))
    export_savedmodel(network, os.path.join(folder, "saved_model"), spec)
    return spec
