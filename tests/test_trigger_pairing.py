"""Pairing fMRI volumes with their own triggers under an export latency (pure windower, no LSL).

Every test checks, volume by volume, that each window's volumes sit at their own trigger's time
(``window.fmri_times`` against the known trigger of each ``window.fmri_indices``), or that the
window is flagged.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.problems import ProblemCode
from stream.config import WindowConfig
from stream.volumes import VolumePlacer
from tests.test_windower import TR, Feed, codes, make_windower

PAIRING_FLAGS = {
    ProblemCode.TRIGGER_PAIRING_UNVERIFIED,
    ProblemCode.TRIGGER_LATENCY_CHANGED,
    ProblemCode.FMRI_UNMATCHED,
}


def mispaired(feed: Feed, window) -> bool:
    """Whether any volume of the window is not at its own trigger's time."""
    own = feed.volume_triggers[window.fmri_indices]
    return not np.allclose(window.fmri_times, own, atol=1e-9)


def test_a_three_second_export_latency_is_paired_by_order_and_flagged_high():
    feed = Feed(300, latency=3.0)
    windows = feed.play(make_windower())
    assert windows and windows[-1].fmri_indices.size >= 50
    for window in windows:
        assert not mispaired(feed, window), window.index
        assert window.quality.fmri_pairing == "run_start"
        assert window.quality.trigger_latency == pytest.approx(3.0)
        assert ProblemCode.TRIGGER_LATENCY_HIGH in codes(window)
        assert not codes(window) & PAIRING_FLAGS
        assert window.quality.usable
    high = next(p for p in windows[-1].quality.problems if p.code is ProblemCode.TRIGGER_LATENCY_HIGH)
    assert high.params["latency"] == pytest.approx(3.0) and high.params["limit"] == pytest.approx(TR / 2)


def test_the_old_nearest_trigger_rule_would_have_mispaired_every_volume():
    # The same stamps joined mid-run (no silence before the first trigger, no expected latency):
    # the latency is ambiguous modulo TR; the windows are flagged, never silently mispaired.
    feed = Feed(300, latency=3.0, lead_in=1.0)
    windows = feed.play(make_windower())
    assert any(mispaired(feed, w) for w in windows)
    for window in windows:
        if window.fmri_indices.size:
            assert ProblemCode.TRIGGER_PAIRING_UNVERIFIED in codes(window)
            assert window.quality.fmri_pairing == "assumed"


def test_an_expected_latency_pairs_right_when_joining_mid_run():
    feed = Feed(300, latency=3.0, lead_in=1.0, stamp_error=0.05)
    windows = feed.play(make_windower(WindowConfig(expected_latency=3.0)))
    assert windows
    for window in windows:
        assert not mispaired(feed, window)
        assert window.quality.fmri_pairing == "expected_latency"
        assert not codes(window) & (PAIRING_FLAGS | {ProblemCode.TRIGGER_LATENCY_HIGH})


def test_a_half_second_latency_is_paired_and_not_flagged():
    feed = Feed(300, latency=0.5, stamp_error=0.05)
    windows = feed.play(make_windower())
    for window in windows:
        assert not mispaired(feed, window)
        assert window.quality.trigger_latency == pytest.approx(0.5, abs=0.06)
        assert not codes(window) & (PAIRING_FLAGS | {ProblemCode.TRIGGER_LATENCY_HIGH})


@pytest.mark.parametrize("latency", [0.0, 3.0])
def test_dummy_scans_triggers_have_no_volume(latency):
    feed = Feed(300, latency=latency, dummy_scans=3)
    # Without the count, every volume would sit three triggers early: a config error, not detectable.
    windows = feed.play(make_windower(WindowConfig(dummy_scans=3)))
    assert windows
    for window in windows:
        assert not mispaired(feed, window)
        assert window.quality.fmri_pairing == "run_start"
        assert not codes(window) & PAIRING_FLAGS
    first = windows[0]
    assert first.fmri_indices[0] == 0 and first.fmri_times[0] == pytest.approx(feed.all_triggers[3])
    # The dummy scans' triggers are not counted as volumes due.
    assert first.quality.fmri_expected == first.quality.fmri_volumes
    assert ProblemCode.FMRI_VOLUMES_MISSING not in codes(first)


def test_a_latency_jump_mid_run_keeps_the_order_and_flags_the_windows_that_span_it():
    jump_at = 150.0
    feed = Feed(400, latency=0.5, latency_jump=(jump_at, 3.0), stamp_error=0.02)
    windower = make_windower()
    windows = feed.play(windower)
    changed_volume = int(np.flatnonzero(feed.volume_triggers >= feed.eeg_times[0] + jump_at)[1])
    assert windower.volumes.latency_changes == 1
    for window in windows:
        assert not mispaired(feed, window)
        spans = changed_volume in window.fmri_indices
        assert (ProblemCode.TRIGGER_LATENCY_CHANGED in codes(window)) == spans, window.index
        if spans:
            change = next(p for p in window.quality.problems if p.code is ProblemCode.TRIGGER_LATENCY_CHANGED)
            assert change.params["previous"] == pytest.approx(0.5, abs=0.05)
            assert change.params["latency"] == pytest.approx(3.0, abs=0.05)
    assert windows[-1].quality.trigger_latency == pytest.approx(3.0, abs=0.05)
    assert ProblemCode.TRIGGER_LATENCY_HIGH in codes(windows[-1])


def test_a_new_run_after_silence_is_locked_again_by_order():
    placer = VolumePlacer(TR, capacity=200, dummy_scans=2)
    placer.observe_from(0.0)
    first_run = 20.0 + np.arange(30) * TR  # 2 dummy scans, then 28 volumes
    second_run = first_run[-1] + 60.0 + np.arange(30) * TR  # a minute of silence, a new run
    placer.add_triggers(first_run)
    placer.add_volumes(np.arange(28), first_run[2:] + 3.0, np.ones((28, 2)))
    # The source goes on numbering; the latency is now 1 s.
    placer.add_triggers(second_run)
    placer.add_volumes(28 + np.arange(28), second_run[2:] + 1.0, np.ones((28, 2)))
    volumes = placer.volumes_between(0, second_run[-1] + 1)
    assert [v.index for v in volumes] == list(range(56)) and all(v.matched for v in volumes)
    np.testing.assert_allclose([v.time for v in volumes], np.concatenate([first_run[2:], second_run[2:]]))
    assert placer.pairing == "run_start" and placer.latency == pytest.approx(1.0)


def test_a_restarted_source_numbering_from_zero_is_locked_again():
    placer = VolumePlacer(TR, capacity=200)
    placer.observe_from(0.0)
    triggers = 20.0 + np.arange(40) * TR
    placer.add_triggers(triggers[:20])
    placer.add_volumes(np.arange(20), triggers[:20] + 3.0, np.ones((20, 2)))
    placer.add_triggers(triggers[20:])
    placer.add_volumes(np.arange(20), triggers[20:] + 3.0, np.ones((20, 2)))  # numbering restarted
    volumes = placer.volumes_between(0, triggers[-1] + 1)
    assert len(volumes) == 40 and all(v.matched for v in volumes)
    np.testing.assert_allclose([v.time for v in volumes], triggers)
    assert placer.remaps == 1


def test_a_broken_trigger_grid_without_silence_is_locked_again_on_the_latency():
    # A looping replay: the next pass starts 5.1 s (not a whole number of TRs, not a silence) after
    # the last trigger, with the volume numbering going on.
    placer = VolumePlacer(TR, capacity=200)
    placer.observe_from(0.0)
    first = 20.0 + np.arange(20) * TR
    second = first[-1] + 5.1 + np.arange(20) * TR
    for index, time in enumerate(np.concatenate([first, second])):
        placer.add_triggers(np.array([time]))
        placer.add_volumes(np.array([index]), np.array([time + 3.0]), np.ones((1, 2)))
    volumes = placer.volumes_between(0, second[-1] + 5)
    assert len(volumes) == 40 and all(v.matched for v in volumes)
    np.testing.assert_allclose([v.time for v in volumes], np.concatenate([first, second]))
    assert placer.latency == pytest.approx(3.0) and placer.latency_changes == 0
