"""Per-volume regional BOLD means: what the fMRI LSL stream carries.

Each fMRI volume is reduced to the mean signal of each region of the brain. The
regions come from an atlas (an integer label image, 0 = background) when one is
given; otherwise from :func:`grid_parcellation` of the brain mask, a documented,
deterministic split of the mask's bounding box into equal blocks. The brain
mask comes from a mask file when given, else from :func:`compute_epi_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_GRID = (3, 3, 3)
MIN_REGION_VOXELS = 4


@dataclass(frozen=True)
class Parcellation:
    """Regions of a brain volume.

    Attributes
    ----------
    labels : np.ndarray of int, shape (nx, ny, nz)
        Region number per voxel (1..n_regions), 0 outside every region.
    names : tuple of str
        One name per region, in label order.
    description : str
        How the regions were made (stored in the stream metadata).
    """

    labels: np.ndarray
    names: tuple[str, ...]
    description: str

    @property
    def n_regions(self) -> int:
        """Number of regions."""
        return len(self.names)

    def centroids(self) -> np.ndarray:
        """Voxel-index centroid of each region, shape (n_regions, 3)."""
        index = np.arange(1, self.n_regions + 1)
        return np.array(ndimage.center_of_mass(np.ones_like(self.labels), self.labels, index))


def compute_epi_mask(mean_image: np.ndarray) -> np.ndarray:
    """Brain mask of an EPI series from its temporal mean image.

    The threshold is Otsu's (maximal between-class variance of the intensity
    histogram); the largest connected component is kept and its holes filled.

    Parameters
    ----------
    mean_image : np.ndarray, shape (nx, ny, nz)
        Temporal mean of the BOLD series.

    Returns
    -------
    mask : np.ndarray of bool, shape (nx, ny, nz)

    Raises
    ------
    ValueError
        If the image is constant (no brain can be told from background).
    """
    values = mean_image[np.isfinite(mean_image)].ravel()
    if values.size == 0 or values.min() == values.max():
        raise ValueError("cannot compute a brain mask: the mean BOLD image is constant")
    counts, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    threshold = centres[int(np.argmax(between))]
    mask = np.nan_to_num(mean_image) > threshold
    components, n_components = ndimage.label(mask)
    if n_components > 1:
        sizes = np.bincount(components.ravel())[1:]
        mask = components == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)


def grid_parcellation(
    mask: np.ndarray,
    grid: tuple[int, int, int] = DEFAULT_GRID,
    min_voxels: int = MIN_REGION_VOXELS,
) -> Parcellation:
    """Split a brain mask into blocks of a regular grid over its bounding box.

    Parameters
    ----------
    mask : np.ndarray of bool, shape (nx, ny, nz)
        Brain mask.
    grid : tuple of 3 int
        Number of blocks along x, y and z (default 3 x 3 x 3).
    min_voxels : int
        Blocks with fewer brain voxels than this are left out (their voxels
        belong to no region).

    Returns
    -------
    parcellation : Parcellation
        Regions numbered in x-major order of the blocks, named ``gXYZ``.

    Raises
    ------
    ValueError
        If the mask is empty or no block keeps ``min_voxels`` voxels.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("cannot parcellate an empty brain mask")
    where = np.argwhere(mask)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    block = np.zeros((*mask.shape, 3), dtype=int)
    for axis in range(3):
        coords = np.arange(mask.shape[axis])
        edges = np.linspace(low[axis], high[axis], grid[axis] + 1)
        index = np.clip(np.searchsorted(edges, coords, side="right") - 1, 0, grid[axis] - 1)
        shape = [1, 1, 1]
        shape[axis] = -1
        block[..., axis] = index.reshape(shape)
    labels = np.zeros(mask.shape, dtype=np.int32)
    names = []
    for bx in range(grid[0]):
        for by in range(grid[1]):
            for bz in range(grid[2]):
                voxels = mask & (block[..., 0] == bx) & (block[..., 1] == by) & (block[..., 2] == bz)
                if voxels.sum() >= min_voxels:
                    names.append(f"g{bx}{by}{bz}")
                    labels[voxels] = len(names)
    if not names:
        raise ValueError(f"no block of the {grid} grid holds {min_voxels} brain voxels")
    description = (
        f"grid parcellation: mask bounding box split into {grid[0]}x{grid[1]}x{grid[2]} "
        f"blocks, blocks with < {min_voxels} brain voxels left out"
    )
    return Parcellation(labels=labels, names=tuple(names), description=description)


def atlas_parcellation(atlas: np.ndarray, mask: np.ndarray | None = None) -> Parcellation:
    """Regions from an integer label image.

    Parameters
    ----------
    atlas : np.ndarray of int, shape (nx, ny, nz)
        Label per voxel, 0 for background.
    mask : np.ndarray of bool | None
        Optional brain mask applied on top of the atlas.

    Returns
    -------
    parcellation : Parcellation
        Regions renumbered 1..n in increasing order of the atlas labels, named
        ``atlas-<label>``.

    Raises
    ------
    ValueError
        If the atlas holds no non-zero label inside the mask.
    """
    atlas = np.rint(np.asarray(atlas)).astype(np.int64)
    if mask is not None:
        atlas = np.where(mask, atlas, 0)
    values = np.unique(atlas[atlas > 0])
    if values.size == 0:
        raise ValueError("the atlas holds no region (no label > 0 inside the mask)")
    labels = np.searchsorted(values, atlas).astype(np.int32) + 1
    labels[atlas <= 0] = 0
    names = tuple(f"atlas-{int(value)}" for value in values)
    return Parcellation(labels=labels, names=names, description="atlas label image")


def region_means(bold: np.ndarray, parcellation: Parcellation) -> np.ndarray:
    """Mean BOLD signal of each region in each volume.

    Parameters
    ----------
    bold : np.ndarray, shape (nx, ny, nz, n_volumes)
        BOLD series.
    parcellation : Parcellation
        Regions on the same voxel grid.

    Returns
    -------
    means : np.ndarray of float32, shape (n_volumes, n_regions)

    Raises
    ------
    ValueError
        If the BOLD grid and the parcellation grid differ.
    """
    if bold.ndim != 4 or bold.shape[:3] != parcellation.labels.shape:
        raise ValueError(
            f"BOLD volumes of shape {bold.shape[:3]} do not match the parcellation grid "
            f"{parcellation.labels.shape}"
        )
    flat_labels = parcellation.labels.ravel()
    inside = np.flatnonzero(flat_labels)
    groups = flat_labels[inside] - 1
    counts = np.bincount(groups, minlength=parcellation.n_regions)
    # One averaging matrix (regions x voxels) applied to all volumes at once.
    weights = np.zeros((parcellation.n_regions, inside.size))
    weights[groups, np.arange(inside.size)] = 1.0 / counts[groups]
    voxels = bold.reshape(-1, bold.shape[3])[inside].astype(np.float64)
    return (weights @ voxels).T.astype(np.float32)


def volume_region_means(volume: np.ndarray, parcellation: Parcellation) -> np.ndarray:
    """Mean signal of each region in one volume (the live, volume-by-volume path).

    Parameters
    ----------
    volume : np.ndarray, shape (nx, ny, nz)
        One BOLD volume.
    parcellation : Parcellation
        Regions on the same grid.

    Returns
    -------
    means : np.ndarray of float32, shape (n_regions,)
    """
    return region_means(volume[..., np.newaxis], parcellation)[0]
