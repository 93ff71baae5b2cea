"""The one result object every consumer reads: the recorder, the feed, the viewer, the reports."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from core.windows import Window

PROTOCOL_VERSION = 1


@dataclass
class Prediction:
    """The model's verdict on one window, with everything needed to trust (or not) it.

    Attributes
    ----------
    window : int
        Window number since the session started.
    stream_time : float
        LSL time of the window's end (its last EEG sample) on this machine's clock.
    wall_time : float
        Unix time when the prediction was made.
    label : str
        Most probable class.
    probabilities : dict
        Class name to probability.
    features : dict
        The 11 features (NaN as None in messages).
    quality : dict
        The window's quality record (gaps, bad channels, fMRI staleness, usable...).
    stage : str | None
        Scored stage when replaying with truth.
    latency_ms : float
        Processing time from the window being cut to the prediction.
    fmri_used : bool
        Whether the model used the window's fMRI features; False: predicted from the EEG alone
        (no fMRI stream, too few volumes, stale volumes or non-finite fMRI features; the quality
        record then holds a ``predicted_without_fmri`` problem saying why).
    """

    window: int
    stream_time: float
    wall_time: float
    label: str
    probabilities: dict[str, float]
    features: dict[str, float]
    quality: dict[str, Any]
    stage: str | None = None
    latency_ms: float = 0.0
    fmri_used: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_probabilities(
        cls,
        window: Window,
        probabilities: np.ndarray,
        label_names: Sequence[str],
        features: dict[str, float],
        quality: dict[str, Any],
        latency_ms: float,
        fmri_used: bool = True,
    ) -> Prediction:
        """Build from a window, the model's output and the features (``fmri_used``: see the class)."""
        return cls(
            window=window.index,
            stream_time=float(window.end),
            wall_time=time.time(),
            label=str(label_names[int(np.argmax(probabilities))]),
            probabilities={name: float(p) for name, p in zip(label_names, probabilities, strict=True)},
            features=features,
            quality=quality,
            stage=window.stage,
            latency_ms=latency_ms,
            fmri_used=fmri_used,
        )

    def to_message(self) -> dict[str, Any]:
        """The ``prediction`` message of the websocket protocol (``docs/protocol.md``)."""
        return {
            "type": "prediction",
            "version": PROTOCOL_VERSION,
            "window": self.window,
            "stream_time": self.stream_time,
            "wall_time": self.wall_time,
            "label": self.label,
            "probabilities": self.probabilities,
            "features": {
                k: (None if v is None or not math.isfinite(v) else v) for k, v in self.features.items()
            },
            "quality": self.quality,
            "stage": self.stage,
            "latency_ms": round(self.latency_ms, 3),
            "fmri_used": self.fmri_used,
        }

    @cached_property
    def message(self) -> dict[str, Any]:
        """The ``prediction`` message, built once for every sink (a prediction is not changed once made)."""
        return self.to_message()

    @cached_property
    def message_json(self) -> str:
        """:attr:`message` as compact JSON text, encoded once for the recorder and every websocket client."""
        return json.dumps(self.message, separators=(",", ":"), ensure_ascii=False)
