"""Per-channel window checks: the cached per-second extremes give what a direct look at the data gives."""

import numpy as np
import pytest

from stream.channel_checks import ChannelChecks

BLOCK = 250
THRESHOLD = 0.5


def direct_checks(eeg: np.ndarray, first_sample: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: every value looked at, every whole block (counted on sample numbers) measured afresh."""
    finite = np.isfinite(eeg).all(axis=1)
    blocks = np.arange(first_sample, first_sample + eeg.shape[1]) // BLOCK
    whole = [b for b in np.unique(blocks) if (blocks == b).sum() == BLOCK]
    parts = [eeg[:, blocks == b] for b in whole] or [eeg]  # no whole block: the window as one
    with np.errstate(invalid="ignore"):
        flat = np.any([np.ptp(part, axis=1) < THRESHOLD for part in parts], axis=0)
    return finite, flat


def recording(seed: int, n_times: int = 20_000, n_channels: int = 6) -> np.ndarray:
    """Noise with a flat stretch, a NaN and an infinity on different channels."""
    rng = np.random.default_rng(seed)
    eeg = rng.normal(0, 20, (n_channels, n_times)).astype(np.float32)
    eeg[1, 5_000:5_600] = 4.0  # flat for 2.4 blocks
    eeg[2, 9_001] = np.nan
    eeg[3, 12_345] = np.inf
    eeg[4, 15_000:15_200] = -1.0  # flat for less than a block: never flat
    return eeg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlapping_windows_match_the_direct_checks(seed):
    eeg = recording(seed)
    checks = ChannelChecks(BLOCK, THRESHOLD)
    rng = np.random.default_rng(seed + 10)
    start = int(rng.integers(0, 300))
    seen_flat, seen_nan, seen_inf = False, False, False
    while start + 7_500 <= eeg.shape[1]:
        window = eeg[:, start : start + 7_500].copy()
        finite, flat = checks(window, start)
        expected_finite, expected_flat = direct_checks(window, start)
        np.testing.assert_array_equal(finite, expected_finite)
        np.testing.assert_array_equal(flat, expected_flat)
        assert not flat[4]
        seen_flat |= bool(flat[1])
        seen_nan |= not finite[2]
        seen_inf |= not finite[3]
        start += int(rng.integers(400, 700))  # a hop that is not a whole number of blocks
    assert seen_flat and seen_nan and seen_inf


def test_a_nan_at_the_window_edge_outside_any_whole_block_is_found():
    eeg = np.random.default_rng(3).normal(0, 20, (3, 1_000)).astype(np.float32)
    eeg[0, 5] = np.nan  # in the head, before the first whole block
    eeg[2, -3] = np.nan  # in the tail, after the last whole block
    finite, flat = ChannelChecks(BLOCK, THRESHOLD)(eeg, first_sample=130)
    assert finite.tolist() == [False, True, False]
    assert not flat.any()


def test_a_window_shorter_than_a_block_is_judged_whole():
    eeg = np.full((2, 100), 7.0, dtype=np.float32)
    eeg[1] += np.linspace(0, 10, 100, dtype=np.float32)
    finite, flat = ChannelChecks(BLOCK, THRESHOLD)(eeg, first_sample=10)
    assert finite.all()
    assert flat.tolist() == [True, False]


def test_only_the_blocks_of_the_latest_window_are_kept():
    eeg = recording(4)
    checks = ChannelChecks(BLOCK, THRESHOLD)
    for start in range(0, 12_000, 525):
        checks(eeg[:, start : start + 7_500].copy(), start)
    first_block, stop_block = -(-start // BLOCK), (start + 7_500) // BLOCK
    assert checks._first == first_block
    assert checks._highest.shape == (stop_block - first_block, eeg.shape[0])


def test_a_block_of_zero_samples_is_refused():
    with pytest.raises(ValueError, match="block must be >= 1"):
        ChannelChecks(0, THRESHOLD)
