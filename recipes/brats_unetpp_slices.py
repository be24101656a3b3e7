"""Whole-tumour and enhancing-tumour masks on 2D slices of BraTS volumes with UNet++ (DenseNet121 encoder).

On the built-in synthetic dataset (BraTS-layout NIfTI volumes, written on the fly):

    python recipes/brats_unetpp_slices.py

On BraTS 2021, leaving out the patients of the classification stage, from ImageNet weights, on a GPU:

    python recipes/brats_unetpp_slices.py --paper --data-dir BraTS2021_Training_Data \\
        --exclude-cases rsna_patients.txt

The defaults are sized for a 2-core CPU: 96x96 slices, the DenseNet121 encoder (random weights, so
no frozen warm-up) with a narrow decoder, Adam 1e-3. `--paper` selects the published 224x224 slices,
ImageNet weights and 10 frozen warm-up epochs. The steps are those of
`tfseg.workflows.brats_slices.run`: split by patient (20% held out), extract slices in the three
planes (tumour/brain ratio > 0.01, near-duplicates dropped), train (checkpoint every epoch,
`--resume`), score WT and ET on the held-out slices and write `metrics.json`, `curves.png`,
`model.keras` and `saved_model/` to `--output-dir`.
"""

import sys

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("brats-slices", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
