"""Left-ventricle segmentation of cardiac MRI (Sunnybrook) with FCN-8s.

On the built-in synthetic dataset (real 16-bit DICOM + contour text files, written on the fly):

    python recipes/sunnybrook_fcn8s.py

On the Sunnybrook Cardiac Data in the challenge layout, from ImageNet VGG16 weights, on a GPU:

    python recipes/sunnybrook_fcn8s.py --paper --weights imagenet \\
        --image-dir challenge_training --contour-dir TrainingDataContours

The defaults are sized for a 2-core CPU: a VGG16 encoder at a quarter of its width and a
256-wide fc6/fc7, 20 epochs at 256x256. `--paper` selects the published FCN-8s (full VGG16, 4096-wide
fc6/fc7, 256x256, batch 1). The steps are those of `tfseg.workflows.sunnybrook.run`: find the
image/contour pairs and split by patient, decode once and stream through tf.data, build the
model, train (checkpoint every epoch, `--resume` after a crash), evaluate at the original size
next to a model that predicts nothing, and write `model.keras`, `saved_model/` and
`metrics.json` to `--output-dir`.
"""

import sys

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("sunnybrook", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
