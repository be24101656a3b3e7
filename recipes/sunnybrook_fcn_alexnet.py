"""Left-ventricle segmentation of cardiac MRI (Sunnybrook) with FCN-AlexNet (32-pixel stride).

The first model of the DIGITS lab: coarse (one prediction per 32x32 pixels, upsampled), so its
Dice stays below FCN-8s's. On the built-in synthetic dataset:

    python recipes/sunnybrook_fcn_alexnet.py

From Caffe's ImageNet AlexNet, on the real data: the shared `bvlc_alexnet.npy` is a pickle,
which tfseg does not load (unpickling runs code from the file); convert a copy you trust once
with `tfseg.models.weights.save_caffe_npz` (the error message for the `.npy` shows how), then:

    python recipes/sunnybrook_fcn_alexnet.py --paper --weights bvlc_alexnet.npz \\
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
