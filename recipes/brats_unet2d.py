"""Brain-tumour 2D segmentation on BraTS axial slices (FLAIR, T1c, T2) with a ResNet U-Net, patch-wise.

On the built-in synthetic dataset (BraTS-layout NIfTI volumes, written on the fly):

    python recipes/brats_unet2d.py

On a BraTS 2020 release, at the published sizes, on a GPU with mixed precision:

    python recipes/brats_unet2d.py --paper --mixed-precision --data-dir MICCAI_BraTS2020_TrainingData

The defaults are sized for a 2-core CPU: 64x64 patches (stride 32) from 96x96 synthetic slices, a
U-Net on a ResNet18 encoder with a narrow decoder, AdamW 1e-3, focal + Dice loss (the small
necrotic and enhancing classes learn too slowly from the focal loss alone in a CPU budget). `--paper` selects the published
128x128 patches (stride 64), ResNet34 encoder, batch 32, Adam 1e-4. The steps are those of
`tfseg.workflows.brats2d.run`: split the patients into train/val/test, write the tumour patches
of train/val once to `patches.h5` (reused by later runs), stream them with the W3 augmentation,
train with the focal loss (ReduceLROnPlateau, checkpoint every epoch, `--resume`), tile and stitch
whole test slices, print per-class precision/recall/accuracy/IoU/Dice, and write `metrics.json`,
`gifs/`, `curves.png`, `model.keras` and `saved_model/` to `--output-dir`.
"""

import sys

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("brats2d", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
