"""Synthetic BOLD volumes whose low-frequency fluctuations follow the sleep stage.

A small EPI-like volume: an ellipsoidal brain on a dim, noisy background. Each
region of the grid parcellation of the brain carries a low-frequency
(0.01-0.1 Hz) fluctuation, half shared by all regions and half its own, whose
amplitude (percent signal change) rises from wakefulness into light sleep
(Fukunaga et al. 2006; Horovitz et al. 2008; Larson-Prior et al. 2009), plus
white thermal noise per voxel and a slow scanner drift. Deterministic given the
random generator.
"""

from __future__ import annotations

import numpy as np

from recordings.regions import Parcellation, grid_parcellation
from simulators.surrogate_eeg import band_noise, stage_envelope

VOLUME_SHAPE = (24, 28, 20)
VOXEL_SIZE_MM = (6.0, 6.0, 6.0)
BASELINE = 800.0
BACKGROUND = 25.0
# Amplitude (SD, % signal change) of the regional low-frequency fluctuations.
FLUCTUATION_PERCENT = {"W": 0.4, "N1": 0.9, "N2": 1.2, "N3": 1.0}
THERMAL_NOISE_PERCENT = 0.5
DRIFT_PERCENT = 1.0


def brain_mask(shape: tuple[int, int, int] = VOLUME_SHAPE) -> np.ndarray:
    """Ellipsoidal brain mask filling most of the volume."""
    grid = np.indices(shape, dtype=float)
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) * np.array([0.42, 0.42, 0.40])
    distance = sum(((grid[axis] - centre[axis]) / radii[axis]) ** 2 for axis in range(3))
    return distance <= 1.0


def synthesize_bold(
    stage_per_volume: np.ndarray, tr: float, rng: np.random.Generator
) -> tuple[np.ndarray, Parcellation]:
    """Synthesize one BOLD run.

    Parameters
    ----------
    stage_per_volume : np.ndarray of int, shape (n_volumes,)
        Index into ``("W", "N1", "N2", "N3")`` of the stage at each volume.
    tr : float
        Repetition time in seconds.
    rng : np.random.Generator
        Source of randomness.

    Returns
    -------
    bold : np.ndarray of int16, shape (*VOLUME_SHAPE, n_volumes)
        Scanner-like intensities.
    parcellation : Parcellation
        The grid parcellation of the brain mask the fluctuations were drawn on.
    """
    n_volumes = stage_per_volume.size
    mask = brain_mask()
    parcellation = grid_parcellation(mask)
    sfreq = 1.0 / tr
    amplitude = stage_envelope(stage_per_volume, FLUCTUATION_PERCENT, sfreq, smooth_s=15.0)
    shared = band_noise(rng, n_volumes, sfreq, 0.01, 0.1)
    regional = np.array([band_noise(rng, n_volumes, sfreq, 0.01, 0.1) for _ in range(parcellation.n_regions)])
    fluctuation = amplitude * np.sqrt(0.5) * (shared + regional)  # percent, (regions, volumes)
    time = np.linspace(-1, 1, n_volumes)
    drift = DRIFT_PERCENT * (0.6 * time + 0.4 * time**2)

    # Smooth tissue contrast: brighter centre, darker edges, fixed per run.
    grid = np.indices(VOLUME_SHAPE, dtype=float)
    centre = (np.array(VOLUME_SHAPE) - 1) / 2
    radial = np.sqrt(sum(((grid[axis] - centre[axis]) / VOLUME_SHAPE[axis]) ** 2 for axis in range(3)))
    baseline = np.where(mask, BASELINE * (1.15 - 0.5 * radial), BACKGROUND)

    labels = parcellation.labels
    percent = np.zeros((*VOLUME_SHAPE, n_volumes))
    inside = labels > 0
    percent[inside] = fluctuation[labels[inside] - 1] + drift
    noise = rng.standard_normal((*VOLUME_SHAPE, n_volumes))
    bold = baseline[..., None] * (1 + percent / 100 + THERMAL_NOISE_PERCENT / 100 * noise)
    return np.clip(np.rint(bold), 0, np.iinfo(np.int16).max).astype(np.int16), parcellation
