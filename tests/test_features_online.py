"""Live (LSL, incremental) and offline (whole session) feature tables are identical."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from features.extractor import FeatureExtractor
from features.names import FEATURE_NAMES
from pipeline.offline import extract_session, window_record
from recordings.montage import SAMPLE_INDEX_CHANNEL
from recordings.session import read_session
from simulators.replay import SessionPlayer
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig, WindowConfig

pytestmark = pytest.mark.lsl

# Bounds that only guard against hanging: every wait below ends on its event.
CONNECT_SECONDS = 60
RUN_SECONDS = 300
SPEED = 20


def test_online_and_offline_feature_tables_are_identical(short_dataset, unique_prefix):
    session = read_session(short_dataset, "99", "sleep-1")
    # Live, a window waits (up to max_fmri_wait of stream time) for the trigger and the volume of its
    # end, which a loaded machine may deliver after the EEG; offline, they are always there. Waiting
    # up to half a minute of wall time, every live window has its volumes, as offline.
    geometry = WindowConfig(max_fmri_wait=30 * SPEED)
    offline = extract_session(session, window_config=geometry)
    sample_row = session.ch_names.index(SAMPLE_INDEX_CHANNEL)
    origin = float(session.volume_times[0])  # run time zero on the recording's sample clock

    config = AcquisitionConfig.for_replay(
        unique_prefix, with_truth=True, resolve_timeout=CONNECT_SECONDS, window=geometry
    )
    # The player holds every sample until all four streams are consumed: the acquisition, which
    # connects them one by one within its own bound, receives the recording from its first sample.
    player = SessionPlayer(
        session, speed=SPEED, with_truth=True, prefix=unique_prefix, wait_for_consumers=5 * CONNECT_SECONDS
    )
    extractor = FeatureExtractor()
    rows, numbers = [], []
    with player, Acquisition(config) as acquisition:
        deadline = time.monotonic() + RUN_SECONDS
        # The run's last window waits for a volume that never comes (the scanner stopped): live, it
        # is emitted once the EEG goes on; this finite replay stops before, so expect one fewer.
        while len(rows) < len(offline) - 1 and time.monotonic() < deadline:
            try:
                window = acquisition.queue.get(timeout=0.2)
            except TimeoutError:
                continue
            rows.append(window_record(window, extractor.compute(window)))
            # float32 holds these sample numbers (< 2**24) exactly.
            numbers.append(window.eeg[sample_row].astype(np.int64))
        # Every truth marker reaches the windower (if late for some windows, see below).
        epochs = list(session.scoring.stages)
        while len(acquisition.windower.truth) < len(epochs) and time.monotonic() < deadline:
            time.sleep(0.05)
        markers = [stage for _, stage in acquisition.windower.truth.items()]
    online = pd.DataFrame(rows)

    assert len(offline) == 45  # (123 s of EEG - 30 s) / 2.1 s + 1
    assert len(online) == 44
    offline = offline.iloc[:44]
    np.testing.assert_array_equal(online["window"], offline["window"])
    # The online bounds are on the dejittered LSL clock, which follows the sample times only closely:
    # compare what the windows hold instead. Each online window holds exactly the recording's samples
    # inside the offline window's bounds (start < t <= end, t = sample number / sfreq).
    sfreq = session.sfreq
    for held, bounds in zip(numbers, offline[["window", "start", "end"]].itertuples(), strict=True):
        first = round((bounds.start + origin) * sfreq) + 1
        last = round((bounds.end + origin) * sfreq)
        np.testing.assert_array_equal(held, np.arange(first, last + 1), err_msg=f"window {bounds.window}")
    # Same samples through the same code: the features are equal to the last bit.
    np.testing.assert_array_equal(online[list(FEATURE_NAMES)], offline[list(FEATURE_NAMES)])
    # Everything that does not depend on the clock is equal too. (fmri_staleness subtracts a trigger
    # stamp from the window's end: two LSL clocks, equal to within the dejittering only.)
    columns = ("usable", "eeg_coverage", "eeg_gaps", "bad_channels", "fmri_volumes", "sfreq", "tr")
    for column in (*columns, "problems", "problem_codes"):
        assert list(online[column]) == list(offline[column]), column
    assert markers == epochs
    # The scored stage comes from the truth stream; a window waits (within max_fmri_wait) for the
    # marker of the epoch holding its midpoint, so a loaded machine delivering the marker after the
    # EEG changes nothing: every live window has the offline stage.
    live = [None if pd.isna(stage) else stage for stage in online["stage"]]
    scored = [None if pd.isna(stage) else stage for stage in offline["stage"]]
    assert live == scored and None not in scored
