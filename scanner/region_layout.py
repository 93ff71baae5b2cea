"""The session's regions, fixed once: brain mask and parcellation every volume is reduced on.

The layout is made as :func:`recordings.session.read_session` makes it, and the region
means are :func:`recordings.regions.volume_region_means`: the replay's own code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recordings.regions import (
    Parcellation,
    atlas_parcellation,
    compute_epi_mask,
    grid_parcellation,
    volume_region_means,
)
from scanner.errors import FmriSourceError, VolumeShapeError
from scanner.volume_files import Volume


@dataclass(frozen=True)
class RegionLayout:
    """The regions of the session, fixed once: every volume is reduced on them.

    Attributes
    ----------
    parcellation : Parcellation
        Regions, as :mod:`recordings.regions` makes them.
    origin : str
        Where the mask and regions came from (stream metadata, messages).
    """

    parcellation: Parcellation
    origin: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid every volume must have."""
        nx, ny, nz = (int(n) for n in self.parcellation.labels.shape)
        return nx, ny, nz

    @property
    def n_regions(self) -> int:
        """Number of regions (channels after the volume index)."""
        return self.parcellation.n_regions

    def means(self, volume: Volume) -> np.ndarray:
        """Region means of a volume, as :func:`recordings.regions.volume_region_means`.

        Raises
        ------
        VolumeShapeError
            If the volume's grid is not the layout's.
        """
        if volume.data.shape != self.shape:
            raise VolumeShapeError(
                f"{volume.path.name}: volume of shape {volume.data.shape} does not match the session's "
                f"grid {self.shape} (fixed by {self.origin})"
            )
        return volume_region_means(volume.data, self.parcellation)

    @classmethod
    def build(
        cls,
        *,
        first_volume: Volume | None = None,
        mask_file: str | os.PathLike | None = None,
        atlas_file: str | os.PathLike | None = None,
    ) -> RegionLayout:
        """Make the layout as :func:`recordings.session.read_session` does, from what is known.

        Brain mask: ``mask_file``, else Otsu's mask of ``first_volume`` (the
        simulators use the run's temporal mean, which does not exist live).
        Regions: the atlas inside the mask, else the 3 x 3 x 3 grid parcellation.

        Parameters
        ----------
        first_volume : Volume | None
            Needed unless ``mask_file`` is given.
        mask_file, atlas_file : path-like | None
            NIfTI images on the BOLD grid.

        Returns
        -------
        layout : RegionLayout

        Raises
        ------
        FmriSourceError
            If an image cannot be read, the grids differ, or no region results.
        """
        mask: np.ndarray | None = None
        origin = ""
        if mask_file is not None:
            mask = _read_image(mask_file, "mask") > 0
            origin = f"mask {Path(mask_file).name}"
        elif first_volume is None:
            raise ValueError("a region layout needs a mask file or a first volume")
        atlas = None
        if atlas_file is not None:
            atlas = _read_image(atlas_file, "atlas")
            if mask is not None and atlas.shape != mask.shape:
                raise FmriSourceError(f"atlas grid {atlas.shape} differs from the mask grid {mask.shape}")
        if mask is None:
            assert first_volume is not None  # checked above, before the atlas is read
            try:
                mask = compute_epi_mask(first_volume.data)
            except ValueError as err:
                raise FmriSourceError(f"{first_volume.path.name}: {err}") from None
            origin = f"Otsu mask of the first volume {first_volume.path.name}"
        if first_volume is not None and first_volume.data.shape != mask.shape:
            raise FmriSourceError(
                f"{first_volume.path.name}: volume grid {first_volume.data.shape} differs from the "
                f"{origin} grid {mask.shape}"
            )
        try:
            if atlas is not None and atlas_file is not None:
                if atlas.shape != mask.shape:
                    raise FmriSourceError(
                        f"atlas grid {atlas.shape} differs from the volume grid {mask.shape}"
                    )
                parcellation = atlas_parcellation(atlas, mask)
                origin += f", regions of atlas {Path(atlas_file).name}"
            else:
                parcellation = grid_parcellation(mask)
        except ValueError as err:
            raise FmriSourceError(f"no usable regions ({origin}): {err}") from None
        return cls(parcellation, origin)


def _read_image(path: str | os.PathLike, what: str) -> np.ndarray:
    """A 3-D NIfTI image's values as stored (a 4-D image of one volume counts)."""
    import nibabel as nib

    try:
        image: Any = nib.load(path)
        data = np.asarray(image.dataobj)
    except Exception as err:  # nibabel raises several types for missing or broken files
        raise FmriSourceError(f"{what} {path}: cannot be read as NIfTI ({err})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise FmriSourceError(f"{what} {path}: expected a 3-D image, found shape {data.shape}")
    return data
