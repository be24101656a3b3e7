"""Lower-grade glioma FLAIR abnormality (Kaggle lgg-mri-segmentation) with a ResUNet.

On the built-in synthetic dataset (RGB TIFF slices and TIFF masks in the Kaggle layout, written on the fly):

    python recipes/lgg_resunet.py

On the Kaggle data, driven by one JSON config as in rmldnn (flags override its fields):

    python recipes/lgg_resunet.py --paper --data-dir lgg-mri-segmentation --config lgg.json

The defaults are sized for a 2-core CPU: a ResUNet with filters 16-128 at 128x128, batch 16, Adam
with a higher start (1e-3) than rmldnn's 1e-4 because the run is a few epochs, exponential decay
0.95 per epoch, soft Dice on the sigmoid output. `--paper` selects rmldnn's sizes (filters 64-512,
bridge 1024, 256x256, batch 32, Adam 1e-4, 20 epochs). The steps are those of
`tfseg.workflows.lgg.run`: find the slices and split 90/10 by patient, decode once, train
(checkpoint every epoch, `--resume`), evaluate on the test patients, and write `metrics.json`,
`predictions.h5`, `overlays/*.png`, `curves.png`, `model.keras` and `saved_model/` to `--output-dir`.
"""
import sys

from tfseg.workflows import lgg
from tfseg.workflows.recipe import recipe_main

CPU_DEFAULTS = lgg.LggConfig(
    data=lgg.DataSection(image_size=128),
    model=lgg.ModelSection(name="resunet", options={"filters": [16, 32, 64, 128], "bridge_filters": 256}),
    train=lgg.TrainSection(epochs=25, batch_size=16, learning_rate=1e-3, lr_decay=0.95, loss="dice"),
    output_dir="runs/lgg_resunet",
)


def main(argv=None):
    return recipe_main(argv, lgg, CPU_DEFAULTS, lgg.PAPER_SIZES, __doc__)


if __name__ == "__main__":
    sys.exit(main())
