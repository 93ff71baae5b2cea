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

from core.windows import Window
from features.extractor import FeatureExtractor
from model.inference import Predictor
from pipeline.prediction import Prediction
from stream.acquisition import Acquisition

logger = logging.getLogger(__name__)
HISTORY = 2000  # predictions kept for /api/history (about 70 minutes at 2.1 s)


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
        probabilities = self.predictor.predict(features.values)
        quality = window.quality.as_dict()
        quality["feature_problems"] = [p.text for p in features.problems]
        quality["feature_problem_codes"] = [p.as_dict() for p in features.problems]
        quality["usable"] = bool(quality["usable"] and features.complete)
        return Prediction.from_probabilities(
            window,
            probabilities,
            self.predictor.label_names,
            features.as_dict(),
            quality,
            latency_ms=(time.perf_counter() - started) * 1e3,
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
