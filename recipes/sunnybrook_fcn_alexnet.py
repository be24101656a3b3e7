"""Left-ventricle segmentation of cardiac MRI (Sunnybrook) with FCN-AlexNet (32-pixel stride).

The first model of the DIGITS lab: coarse (one prediction per 32x32 pixels, upsampled), so its
Dice stays below FCN-8s's. On the built-in synthetic dataset:

    python recipes/sunnybrook_fcn_alexnet.py

From Caffe's ImageNet AlexNet (a converted `bvlc_alexnet.npy`), on the real data:

    python recipes/sunnybrook_fcn_alexnet.py --paper --weights bvlc_alexnet.npy \\
        --image-dir challenge_training --contour-dir TrainingDataContours

Defaults are sized for a 2-core CPU (half-width AlexNet, 512-wide fc6/fc7); `--paper` selects
the published sizes (full width, 4096-wide fc6/fc7, 256x256).
"""

import sys

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("sunnybrook-alexnet", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
