"""The fault schedule of the replay, without LSL (the faults themselves: test_reliability_streams.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.faults import (
    BadChannels,
    EegClockJump,
    EegOutletLoss,
    EegRateError,
    Fault,
    FaultSchedule,
    FmriStall,
    TriggersStop,
)

CHANNELS = ("Fz", "Cz", "Pz", "EOG")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EegOutletLoss(start=-1, end=5), "start must be a finite time >= 0"),
        (lambda: FmriStall(start=10, end=5), r"end \(5\) must be after start \(10\)"),
        (lambda: EegOutletLoss(start=10), "needs a finite end"),
        (lambda: EegClockJump(start=10, seconds=0), "seconds must be > 0"),
        (lambda: BadChannels(start=1, end=2), "name at least one flat or NaN channel"),
        (lambda: BadChannels(start=1, end=2, flat=("Cz",), nan=("Cz",)), "both flat and NaN"),
        (lambda: EegRateError(factor=1.0), "factor must be in"),
        (lambda: EegRateError(start=5), "for the whole replay"),
    ],
)
def test_faults_are_validated_when_built(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_schedule_is_validated_against_the_session():
    with pytest.raises(ValueError, match=r"no channel \['C3'\]"):
        FaultSchedule([BadChannels(start=1, end=2, flat=("C3",))], CHANNELS)
    with pytest.raises(ValueError, match="EEG outlet losses overlap"):
        FaultSchedule([EegOutletLoss(start=1, end=10), EegOutletLoss(start=5, end=20)], CHANNELS)
    with pytest.raises(ValueError, match="at most one EEG rate error"):
        FaultSchedule([EegRateError(), EegRateError(factor=0.99)], CHANNELS)
    with pytest.raises(TypeError, match="not a fault"):
        FaultSchedule([Fault(start=1)], CHANNELS)
    assert not FaultSchedule((), CHANNELS) and len(FaultSchedule([TriggersStop(start=3)], CHANNELS)) == 1


def test_the_schedule_answers_the_replay():
    schedule = FaultSchedule(
        [
            EegOutletLoss(start=10, end=20),
            EegClockJump(start=30, seconds=5),
            BadChannels(start=1, end=2, flat=("Fz",), nan=("Pz",), flat_value=7.0),
        ],
        CHANNELS,
    )
    assert [schedule.eeg_outlet_down(t) for t in (9.99, 10, 19.99, 20)] == [False, True, True, False]
    assert schedule.eeg_breaks() == [10, 20] and schedule.retimes_eeg and schedule.rate_factor == 1
    np.testing.assert_array_equal(schedule.eeg_clock_shift(np.array([29.9, 30.0, 100.0])), [0, -5, -5])
    data = np.ones((4, 4), dtype=np.float32)
    corrupted = schedule.corrupt_eeg(data, np.array([0.5, 1.0, 1.5, 2.0]))
    assert np.all(data == 1)  # never written into
    np.testing.assert_array_equal(corrupted[:, 0], [1, 7, 7, 1])
    assert np.isnan(corrupted[1:3, 2]).all() and np.isfinite(corrupted[[0, 3], 2]).all()
    np.testing.assert_array_equal(corrupted[:, [1, 3]], 1)


def test_triggers_are_dropped_and_stalled_volumes_delayed():
    schedule = FaultSchedule([TriggersStop(start=4, end=6), FmriStall(start=104, end=110)], CHANNELS)
    events = [(t, t, kind, None) for t in (2.0, 4.0, 6.0) for kind in ("Triggers", "fMRI")]
    # A second pass of the session: replay time = 100 + session time.
    assert schedule.reschedule(events, offset=100) == [
        (2.0, 2.0, "Triggers", None),
        (2.0, 2.0, "fMRI", None),
        (4.0, 4.0, "Triggers", None),
        (6.0, 6.0, "Triggers", None),
        (10.0, 4.0, "fMRI", None),  # held until the stall ended, stamped at acquisition
        (10.0, 6.0, "fMRI", None),
    ]
    first_pass = schedule.reschedule(events, offset=0)
    assert [e[:3] for e in first_pass if e[2] == "Triggers"] == [
        (2.0, 2.0, "Triggers"),
        (6.0, 6.0, "Triggers"),
    ]


def test_descriptions():
    assert EegOutletLoss(start=40, end=50).describe() == "EEG outlet lost from 40 s to 50 s"
    assert EegClockJump(start=40).describe() == "EEG clock jump from 40 s on, 5 s back"
    assert EegRateError().describe() == "EEG rate error: +2.0% of the nominal rate"
    assert math.isinf(TriggersStop(start=1).end)


def test_a_player_refuses_faults_it_cannot_replay(short_dataset):
    from recordings.session import read_session
    from simulators.replay import SessionPlayer

    session = read_session(short_dataset, "99", "sleep-1")
    with pytest.raises(ValueError, match="faults need a finite speed"):
        SessionPlayer(session, speed=math.inf, faults=[TriggersStop(start=1)])
    with pytest.raises(ValueError, match="cannot loop"):
        SessionPlayer(session, loop=True, faults=[EegRateError()])
    with pytest.raises(ValueError, match="no channel"):
        SessionPlayer(session, faults=[BadChannels(start=1, end=2, nan=("nope",))])
