"""The grid the generators see: the native slices of an image, with a model's in-plane matrix and
voxel size, centred on the native grid (RAS affines, mm)."""

from dataclasses import dataclass

import numpy as np


@dataclass
class ModelGrid:
    """The grid the generators see: native slices, model in-plane matrix and voxel size (RAS affine)."""

    affine: np.ndarray
    shape: tuple

    @staticmethod
    def for_native(native_affine, native_shape, model_grid, model_voxel):
        """model_grid (H, W) and model_voxel (mm) of a manifest; None for both: the native grid (a kind
        without networks works on any grid)."""
        voxel = np.linalg.norm(native_affine[:3, :3], axis=0)
        same = model_grid is None or (tuple(native_shape[:2]) == tuple(model_grid)
                                      and np.allclose(voxel[:2], model_voxel[:2], atol=1e-3))
        if same:
            return ModelGrid(np.asarray(native_affine, float), tuple(native_shape[:3]))
        directions = native_affine[:3, :3] / voxel
        new_voxel = np.array([model_voxel[0], model_voxel[1], voxel[2]])
        centre = native_affine[:3, :3] @ ((np.asarray(native_shape[:3]) - 1) / 2) + native_affine[:3, 3]
        affine = np.eye(4)
        affine[:3, :3] = directions * new_voxel
        shape = (int(model_grid[0]), int(model_grid[1]), int(native_shape[2]))
        affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
        return ModelGrid(affine, shape)

    def is_native(self, native_affine, native_shape):
        return tuple(native_shape[:3]) == self.shape and np.allclose(native_affine, self.affine, atol=1e-6)
