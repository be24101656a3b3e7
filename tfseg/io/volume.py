"""A 3D (or 3D multi-channel) image in memory with its voxel-to-world affine.

Shared by the NIfTI and DICOM readers so both hand back the same thing. The memory layout is
channels last, `(D, H, W)` or `(D, H, W, C)`, where D runs along the NIfTI voxel axis k, H along
j and W along i; the affine is NIfTI's (voxel `(i, j, k)` -> world RAS+ mm), see `tfseg.io.nifti`.

Example:
    >>> import numpy as np
    >>> volume = Volume(np.zeros((4, 5, 6), np.float32), np.diag([0.5, 0.8, 2.0, 1.0]))
    >>> volume.shape, volume.spacing
    ((4, 5, 6), (2.0, 0.8, 0.5))
    >>> volume.world((1, 0, 0)).tolist()  # one slice along D = one voxel along k
    [0.0, 0.0, 2.0]
"""
import dataclasses

import numpy as np


@dataclasses.dataclass
class Volume:
    """Voxel values, channels last, with the NIfTI affine that places them in the world.

    Attributes:
        array: `(D, H, W)` or `(D, H, W, C)` numpy array; D = NIfTI k (z), H = j (y), W = i (x).
        affine: 4x4 float64, NIfTI voxel `(i, j, k)` -> world RAS+ mm (note the index order:
            memory index `(d, h, w)` is voxel `(i, j, k) = (w, h, d)`).
        header: the nibabel header the volume was read with, or None.
        path: the file or folder read, or None.
        meta: free-form extra information from the reader (e.g. the DICOM series UID).
    """

    array: np.ndarray
    affine: np.ndarray
    header: object = None
    path: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)

    @property
    def shape(self):
        """The array's shape, `(D, H, W)` or `(D, H, W, C)`."""
        return tuple(self.array.shape)

    @property
    def spatial_shape(self):
        """`(D, H, W)`."""
        return tuple(self.array.shape[:3])

    @property
    def spacing(self):
        """Voxel size in mm, memory order `(dz, dy, dx)`: norms of the affine's k, j, i columns."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(v) for v in norms[::-1])

    def world(self, index):
        """World RAS+ mm of a memory index `(d, h, w)` (fractional indices allowed).

        Args:
            index: `(d, h, w)`, or an `(N, 3)` array of them.

        Returns:
            `(3,)` or `(N, 3)` float64 world coordinates.
        """
        index = np.asarray(index, dtype=np.float64)
        ijk = index[..., ::-1]
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
