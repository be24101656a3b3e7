"""3D brain-tumour segmentation (BraTS) with SegResNet and its VAE branch (Myronenko 2018).

On the built-in synthetic BraTS dataset (4 NIfTI modalities + labels, written on the fly):

    python recipes/brats_segresnet_vae.py

On BraTS 2018-2021 data, from a Clara/Decathlon datalist or a release folder, with the paper's
sizes (a GPU job):

    python recipes/brats_segresnet_vae.py --paper --datalist datalist.json
    python recipes/brats_segresnet_vae.py --paper --data-dir MICCAI_BraTS2020_TrainingData

Fine-tune a trained model on new cases, with the encoder frozen for the first 10 epochs:

    python recipes/brats_segresnet_vae.py --datalist new.json --pretrained runs/brats/model.keras \\
        --freeze-encoder-epochs 10

The defaults are sized for a 2-core CPU (8 initial filters, 32x48x48 crops of 48x64x64 volumes).
Writes checkpoints, `predictions/<case>_seg.nii.gz` (BraTS labels 1/2/4 on the input's affine),
`overlays/<case>.png`, `model.keras`, `saved_model/` and `metrics.json` to `--output-dir`.
"""
import sys

from tfseg.workflows import brats
from tfseg.workflows.recipe import recipe_main

CPU_DEFAULTS = brats.BratsConfig(
    data=brats.DataSection(crop_size=(32, 48, 48), synthetic_cases=12, foreground_probability=0.7,
                          crops_per_case=8),
    model=brats.ModelSection(init_filters=8, vae_latent=32, dropout=0.1),
    train=brats.TrainSection(epochs=50, batch_size=2, learning_rate=1e-3),
    inference=brats.InferenceSection(overlap=0.5, window_batch_size=4),
    output_dir="runs/brats_segresnet_vae",
)


def main(argv=None):
    return recipe_main(argv, brats, CPU_DEFAULTS, brats.PAPER_SIZES, __doc__)


if __name__ == "__main__":
    sys.exit(main())
