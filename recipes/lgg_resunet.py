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

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("lgg", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
