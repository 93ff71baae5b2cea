"""The live pipeline: windows from the acquisition, the 11 features, the model, one Prediction each.

Runs as an asyncio task. Every prediction goes to each registered sink (the
websocket broadcaster, the LSL prediction outlet, the session recorder) without
waiting for any of them: sinks must return at once (they queue what they need).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from core.problems import ProblemCode, problem
from core.windows import MIN_FMRI_VOLUMES, Window
from features.extractor import FeatureExtractor
from features.names import EEG_FEATURES, FMRI_FEATURES
from model.inference import Predictor
from pipeline.prediction import Prediction
from stream.acquisition import Acquisition

logger = logging.getLogger(__name__)
HISTORY = 2000  # predictions kept for /api/history (about 70 minutes at 2.1 s)
STALE_TRS = 2.0
"""A window whose newest fMRI volume is more than this many TRs before its end is predicted without
fMRI: the export has stalled, and its features describe the past."""
_FMRI = slice(len(EEG_FEATURES), len(EEG_FEATURES) + len(FMRI_FEATURES))


def without_fmri_reason(window: Window, values: np.ndarray) -> str | None:
    """Why the model must leave this window's fMRI out, or None when it may use it.

    Parameters
    ----------
    window : Window
        The window (its fMRI volumes, staleness and TR).
    values : np.ndarray, shape (11,)
        Its features.

    Returns
    -------
    reason : str | None
        In plain English: no fMRI stream, too few volumes, stale volumes or non-finite features.
    """
    quality = window.quality
    if not window.region_names:
        return "no fMRI stream in this session"
    if quality.fmri_volumes < MIN_FMRI_VOLUMES:
        return f"{quality.fmri_volumes} fMRI volume(s) in the window, fewer than {MIN_FMRI_VOLUMES}"
    staleness = quality.fmri_staleness
    if staleness is not None and staleness > STALE_TRS * window.tr:
        return f"the newest fMRI volume is {staleness:.1f} s old (more than {STALE_TRS:g} TR)"
    if not np.isfinite(values[_FMRI]).all():
        return "the fMRI features are not finite"
    return None


class Pipeline:
    """Acquisition → features → model → sinks.

    Parameters
    ----------
    acquisition : Acquisition
        A started acquisition.
    predictor : Predictor
        Live predictor of a loaded bundle.
    extractor : FeatureExtractor | None
        The feature computation (documented defaults when None).

    Attributes
    ----------
    on_window : Callable[[Window], None] | None
        Instrumentation hook: called with each window as :meth:`run` takes it from the queue,
        before its features are computed. It must return at once.
    on_prediction : Callable[[Prediction], None] | None
        Instrumentation hook: called with each prediction as soon as it is computed, before
        any sink. It must return at once (the latency benchmark timestamps the stages with these).
    """

    def __init__(
        self, acquisition: Acquisition, predictor: Predictor, extractor: FeatureExtractor | None = None
    ) -> None:
        self.acquisition = acquisition
        self.predictor = predictor
        self.extractor = extractor or FeatureExtractor()
        self.sinks: list[Callable[[Prediction], None]] = []
        self.history: deque[Prediction] = deque(maxlen=HISTORY)
        self.predictions = 0
        self.errors = 0
        self.running = False
        self.on_window: Callable[[Window], None] | None = None
        self.on_prediction: Callable[[Prediction], None] | None = None

    def add_sink(self, sink: Callable[[Prediction], None]) -> None:
        """Call ``sink(prediction)`` for every prediction."""
        self.sinks.append(sink)

    def process(self, window: Window) -> Prediction:
        """Features and prediction of one window (also usable offline)."""
        started = time.perf_counter()
        if window.quality.restarted:
            self.predictor.reset()
        features = self.extractor.compute(window)
        reason = without_fmri_reason(window, features.values)
        probabilities = self.predictor.predict(features.values, fmri_present=reason is None)
        quality = window.quality.as_dict()
        quality["feature_problems"] = [p.text for p in features.problems]
        quality["feature_problem_codes"] = [p.as_dict() for p in features.problems]
        # The features the model used must be finite: the fMRI ones only when it used them.
        used = features.values if reason is None else features.values[: len(EEG_FEATURES)]
        quality["usable"] = bool(quality["usable"] and np.isfinite(used).all())
        if reason is not None:
            flag = problem(ProblemCode.PREDICTED_WITHOUT_FMRI, reason=reason)
            quality["problems"].append(flag.text)
            quality["problem_codes"].append(flag.as_dict())
        return Prediction.from_probabilities(
            window,
            probabilities,
            self.predictor.label_names,
            features.as_dict(),
            quality,
            latency_ms=(time.perf_counter() - started) * 1e3,
            fmri_used=reason is None,
        )

    async def run(self) -> None:
        """Consume windows until the acquisition stops."""
        self.running = True
        try:
            async for window in self.acquisition.windows():
                try:
                    if self.on_window is not None:
                        self.on_window(window)
                    prediction = self.process(window)
                    if self.on_prediction is not None:
                        self.on_prediction(prediction)
                except Exception:  # one bad window must not stop a night's monitoring
                    self.errors += 1
                    logger.exception("window %s could not be processed", window.index)
                    continue
                self.predictions += 1
                self.history.append(prediction)
                for sink in self.sinks:
                    try:
                        sink(prediction)
                    except Exception:
                        self.errors += 1
                        logger.exception("a prediction sink failed")
                # A backlog of windows is taken from the queue without suspending: let the
                # loop's other tasks (websocket sends, status) run between windows.
                await asyncio.sleep(0)
        finally:
            self.running = False
