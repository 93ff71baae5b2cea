from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from recordings.regions import (
    atlas_parcellation,
    compute_epi_mask,
    grid_parcellation,
    region_means,
    volume_region_means,
)

HAXBY = Path(__file__).parent / "data" / "haxby2001"


@pytest.fixture(scope="module")
def haxby():
    bold = nib.load(HAXBY / "sub001_task001_run001_bold_25mm.nii.gz").get_fdata(dtype=np.float32)
    mask = nib.load(HAXBY / "sub001_brain_mask_25mm.nii.gz").get_fdata() > 0
    return bold, mask


def test_region_means_on_real_bold_equal_direct_voxel_means(haxby):
    bold, mask = haxby
    parcellation = grid_parcellation(mask, grid=(2, 2, 2), min_voxels=1)
    means = region_means(bold, parcellation)
    assert means.shape == (121, parcellation.n_regions)
    for region in range(parcellation.n_regions):
        voxels = bold[parcellation.labels == region + 1]
        np.testing.assert_allclose(means[:, region], voxels.mean(axis=0), rtol=1e-5)


def test_volume_by_volume_path_equals_whole_run_path(haxby):
    bold, mask = haxby
    parcellation = grid_parcellation(mask, grid=(2, 2, 2))
    whole = region_means(bold, parcellation)
    for index in (0, 60, 120):
        np.testing.assert_allclose(volume_region_means(bold[..., index], parcellation), whole[index])


def test_grid_parcellation_covers_the_mask_and_nothing_else(haxby):
    _, mask = haxby
    parcellation = grid_parcellation(mask, grid=(3, 3, 3), min_voxels=1)
    assert np.array_equal(parcellation.labels > 0, mask)
    assert parcellation.n_regions == len(np.unique(parcellation.labels[mask]))
    assert parcellation.centroids().shape == (parcellation.n_regions, 3)


def test_small_blocks_are_left_out(haxby):
    _, mask = haxby
    coarse = grid_parcellation(mask, grid=(3, 3, 3), min_voxels=1)
    strict = grid_parcellation(mask, grid=(3, 3, 3), min_voxels=8)
    assert strict.n_regions < coarse.n_regions
    sizes = np.bincount(strict.labels.ravel())[1:]
    assert sizes.min() >= 8


def test_epi_mask_of_real_bold_lies_inside_the_real_brain_mask(haxby):
    bold, mask = haxby
    computed = compute_epi_mask(bold.mean(axis=3))
    assert computed.sum() > 0.4 * mask.sum()
    assert (computed & mask).sum() / computed.sum() > 0.95


def test_atlas_parcellation_renumbers_labels(haxby):
    bold, mask = haxby
    atlas = np.where(mask, 10, 0)
    atlas[:3][mask[:3]] = 42
    parcellation = atlas_parcellation(atlas)
    assert parcellation.names == ("atlas-10", "atlas-42")
    means = region_means(bold, parcellation)
    np.testing.assert_allclose(means[:, 1], bold[atlas == 42].mean(axis=0), rtol=1e-5)


def test_bad_inputs_raise_clear_errors(haxby):
    bold, mask = haxby
    with pytest.raises(ValueError, match="constant"):
        compute_epi_mask(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="empty brain mask"):
        grid_parcellation(np.zeros((4, 4, 4), bool))
    with pytest.raises(ValueError, match="no region"):
        atlas_parcellation(np.zeros((4, 4, 4)))
    parcellation = grid_parcellation(mask)
    with pytest.raises(ValueError, match="do not match the parcellation grid"):
        region_means(bold[:5], parcellation)
