"""Predictions published as LSL streams, so LabRecorder records them beside the EEG."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.prediction import Prediction

if TYPE_CHECKING:
    import pylsl


class PredictionOutlet:
    """Two outlets: class probabilities (float32, irregular) and the predicted label (Markers).

    Each sample is stamped with the window's end on this machine's LSL clock,
    so recordings align predictions with the EEG they came from.

    Parameters
    ----------
    label_names : sequence of str
        The classes, in probability order.
    prefix : str
        Stream-name prefix: ``<prefix>-Probabilities`` and ``<prefix>-Label``.
    """

    def __init__(self, label_names: Sequence[str], prefix: str = "sleepstream") -> None:
        import pylsl

        token = uuid.uuid4().hex[:8]
        self.names = (f"{prefix}-Probabilities", f"{prefix}-Label")
        probabilities = pylsl.StreamInfo(
            self.names[0],
            "Prediction",
            len(label_names),
            pylsl.IRREGULAR_RATE,
            "float32",
            f"{prefix}-prob-{token}",
        )
        probabilities.set_channel_labels(list(label_names))
        probabilities.set_channel_types(["probability"] * len(label_names))
        probabilities.set_channel_units(["none"] * len(label_names))
        label = pylsl.StreamInfo(
            self.names[1], "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"{prefix}-label-{token}"
        )
        self.label_names = tuple(label_names)
        self._probabilities: pylsl.StreamOutlet | None = pylsl.StreamOutlet(probabilities)
        self._label: pylsl.StreamOutlet | None = pylsl.StreamOutlet(label)

    def __call__(self, prediction: Prediction) -> None:
        """Push one prediction (a pipeline sink); nothing once closed."""
        probabilities, label = self._probabilities, self._label
        if probabilities is None or label is None:
            return
        values = [prediction.probabilities[name] for name in self.label_names]
        probabilities.push_sample(values, prediction.stream_time)
        label.push_sample([prediction.label], prediction.stream_time)

    def close(self) -> None:
        """Withdraw both streams from the network (LabRecorder sees them end)."""
        self._probabilities = self._label = None

    def __enter__(self) -> PredictionOutlet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
