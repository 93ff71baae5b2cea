"""Live (LSL, incremental) and offline (whole session) feature tables are identical."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from features.extractor import FeatureExtractor
from features.names import FEATURE_NAMES
from features.offline import extract_session, window_record
from simulators.replay import SessionPlayer
from simulators.session import read_session
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig

pytestmark = pytest.mark.lsl


def test_online_and_offline_feature_tables_are_identical(short_dataset, unique_prefix):
    session = read_session(short_dataset, "99", "sleep-1")
    offline = extract_session(session)

    config = AcquisitionConfig.for_replay(unique_prefix, with_truth=True, resolve_timeout=5)
    player = SessionPlayer(session, speed=20, with_truth=True, prefix=unique_prefix, wait_for_consumers=10)
    extractor = FeatureExtractor()
    rows = []
    with player, Acquisition(config) as acquisition:
        deadline = time.monotonic() + 30
        # The run's last window waits for a volume that never comes (the scanner stopped): live, it
        # is emitted once the EEG goes on; this finite replay stops before, so expect one fewer.
        while len(rows) < len(offline) - 1 and time.monotonic() < deadline:
            try:
                window = acquisition.queue.get(timeout=0.2)
            except TimeoutError:
                continue
            # Run time zero: the first volume, i.e. its trigger, on this machine's clock.
            first_sample = window.eeg_times[0] - window.eeg[-1, 0] / session.sfreq
            rows.append(
                window_record(window, extractor.compute(window), first_sample + session.volume_times[0])
            )
    online = pd.DataFrame(rows)

    assert len(offline) == 45  # (123 s of EEG - 30 s) / 2.1 s + 1
    assert len(online) == 44
    offline = offline.iloc[:44]
    np.testing.assert_array_equal(online["window"], offline["window"])
    np.testing.assert_allclose(online["end"], offline["end"], atol=1e-4)  # dejittered clock: < 0.03 sample
    np.testing.assert_allclose(online[list(FEATURE_NAMES)], offline[list(FEATURE_NAMES)], rtol=1e-9, atol=0)
    assert list(online["stage"]) == list(offline["stage"])
    assert list(online["usable"]) == list(offline["usable"])
