"""In-scanner EEG: the MR gradient and pulse artefacts removed as the samples arrive.

One chain, chunk by chunk, between the stream and the windows:

1. gradient artefact subtraction at the stream's own rate (``stream/gradient_correction.py``:
   a moving template of the last volumes aligned on the volume triggers to a fraction of a sample,
   then an optimal basis set of the residuals), on every voltage channel (the ECG too, so that
   its R peaks can be found);
2. anti-alias decimation to the feature rate (``stream/decimation.py``);
3. pulse-artefact (ballistocardiogram) subtraction on the EEG channels, per heartbeat found on the
   ECG channel, or in the EEG with the current template when the ECG is unusable
   (``stream/bcg_correction.py``).

The chain delays the EEG by the sum of the stages' holds (:attr:`ArtefactCorrection.latency`);
windows are cut from its output, so they respect it. Stretches a stage could not correct come out as
spans ``(start, end, kind)`` that the windower turns into window problems.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.channels import VOLTAGE_TYPES
from core.problems import ProblemCode
from stream.bcg_correction import BcgCorrector
from stream.config import ArtefactConfig
from stream.decimation import StreamingDecimator, decimation_factor
from stream.gradient_correction import GradientCorrector

Span = tuple[float, float, str]
SPAN_PROBLEMS = {
    "gradient_uncorrected": ProblemCode.GRADIENT_UNCORRECTED,
    "gradient_trigger_inferred": ProblemCode.GRADIENT_TRIGGER_INFERRED,
    "bcg_uncorrected": ProblemCode.BCG_UNCORRECTED,
    "bcg_beats_from_eeg": ProblemCode.BCG_BEATS_FROM_EEG,
}
"""The window problem of each kind of span a correction stage reports."""
BCG_BEFORE = 0.1  # seconds of each heartbeat's epoch before its R peak
BCG_MIN_RATE = 100.0  # Hz: the pulse-artefact stage needs at least this rate


def ecg_index(ch_names: tuple[str, ...], ch_types: tuple[str, ...], name: str | None) -> int | None:
    """The ECG channel: the one named, else the first of type ``ecg``; None when there is none.

    Raises
    ------
    ValueError
        If a name is given and no channel has it.
    """
    if name is not None:
        if name not in ch_names:
            raise ValueError(f"ECG channel {name!r} is not among the EEG stream's channels {list(ch_names)}")
        return ch_names.index(name)
    return next((i for i, kind in enumerate(ch_types) if kind == "ecg"), None)


class ArtefactCorrection:
    """Gradient correction, decimation and BCG correction of one EEG stream, chunk by chunk.

    Parameters
    ----------
    config : ArtefactConfig
        What to correct and how.
    sfreq : float
        The stream's rate in Hz (the raw rate: 5 kHz for an MR amplifier).
    ch_names, ch_types : sequence of str
        The stream's channels.
    tr : float | None
        Repetition time in seconds when known (else measured from the triggers).
    slices_per_volume : int | None
        Slices per volume when the stream or recording says; ``config.slices_per_volume`` wins.
    feature_rate : float | None
        The rate the features need (``WindowConfig.feature_rate_hz``): the output rate is
        ``sfreq / floor(sfreq / feature_rate)``.
    """

    def __init__(
        self,
        config: ArtefactConfig,
        sfreq: float,
        ch_names: tuple[str, ...] | list[str],
        ch_types: tuple[str, ...] | list[str],
        *,
        tr: float | None = None,
        slices_per_volume: int | None = None,
        feature_rate: float | None = 250.0,
    ) -> None:
        names, types = tuple(ch_names), tuple(ch_types)
        voltage = np.array([kind in VOLTAGE_TYPES for kind in types])
        self.config = config
        self.input_sfreq = float(sfreq)
        self.slices_per_volume = config.slices_per_volume or slices_per_volume
        self.gradient = GradientCorrector(
            self.input_sfreq,
            len(names),
            voltage,
            tr=tr,
            slices_per_volume=self.slices_per_volume,
            template_volumes=config.template_volumes,
            min_template_volumes=config.min_template_volumes,
            residual_components=config.residual_components,
            slice_template=config.slice_template,
            trigger_wait=config.trigger_wait,
        )
        factor = decimation_factor(self.input_sfreq, feature_rate)
        self.decimator = StreamingDecimator(self.input_sfreq, factor, voltage) if factor > 1 else None
        self.sfreq = self.input_sfreq / factor
        self.ecg_channel = ecg_index(names, types, config.ecg_channel)
        eeg = np.array([kind == "eeg" for kind in types])
        self.bcg = (
            BcgCorrector(
                self.sfreq,
                len(names),
                eeg,
                self.ecg_channel,
                template_beats=config.bcg_template_beats,
                min_template_beats=min(8, config.bcg_template_beats),
                components=config.bcg_components,
                before=BCG_BEFORE,
                after=config.bcg_after,
            )
            if config.bcg and self.sfreq >= BCG_MIN_RATE and eeg.any()
            else None
        )
        self._bcg_fed = False  # the BCG corrector holds samples (it must be flushed before a bypass)
        self._untrusted: list[tuple[float, float]] = []  # EEG still carrying the gradient artefact

    @property
    def latency(self) -> float:
        """Seconds the output trails the input once the triggers are in: the stages' holds added up."""
        return (
            self.gradient.latency
            + (self.decimator.latency if self.decimator is not None else 0.0)
            + (self.bcg.latency if self.bcg is not None else 0.0)
        )

    def add_triggers(self, stamps: np.ndarray) -> None:
        """Volume triggers (seconds, on the EEG's clock): where each volume's gradient artefact starts."""
        self.gradient.add_triggers(np.asarray(stamps, dtype=float))

    def process(self, times: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        """Feed raw samples (n, n_channels); return the corrected samples now ready, at the output rate.

        Returns
        -------
        times, data : np.ndarray
            Timestamps and corrected samples (float32), contiguous and in order.
        spans : list of (start, end, kind)
            Stretches of the output some stage could not fully correct (``SPAN_PROBLEMS``).
        """
        times, data, spans = self.gradient.process(times, data)
        return self._after_gradient(times, data, spans, final=False)

    def flush(self) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        """End of a recording, or before a dropout: every held sample out, then a fresh start."""
        times, data, spans = self.gradient.flush()
        return self._after_gradient(times, data, spans, final=True)

    def reset(self) -> None:
        """Forget everything held (a stream restart on another timeline)."""
        self.gradient.reset()
        if self.decimator is not None:
            self.decimator.reset()
        if self.bcg is not None:
            self.bcg.reset()
        self._bcg_fed = False
        self._untrusted = []

    def status(self) -> dict[str, Any]:
        """What the live page shows: each stage's state, and the latency the chain adds."""
        return {
            "gradient": self.gradient.status(),
            "bcg": self.bcg.status() if self.bcg is not None else None,
            "latency_s": round(self.latency, 3),
            "input_rate": self.input_sfreq,
            "output_rate": self.sfreq,
        }

    def _bcg_stage(
        self, times: np.ndarray, data: np.ndarray, gradient_spans: list[Span], *, final: bool
    ) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        """The pulse-artefact stage, bypassed where the gradient artefact is still in the EEG.

        EEG still carrying the gradient artefact (the template not ready yet, a volume unlike it)
        would spoil the pulse template, so it goes around the BCG corrector (flagged), which is
        flushed before and starts afresh after.
        """
        assert self.bcg is not None
        # A decimated sample mixes the input within the anti-alias filter's reach on either side,
        # and comes out a call after the gradient stage flagged that input: the flags are kept.
        reach = self.decimator.latency if self.decimator is not None else 0.0
        for start, end, kind in gradient_spans:
            if kind == "gradient_uncorrected":
                self._untrusted.append((start - reach, end + reach))
        untrusted = np.zeros(len(times), dtype=bool)
        for start, end in self._untrusted:
            untrusted |= (times >= start) & (times < end)
        if len(times):
            latest = float(times[-1])
            self._untrusted = [(a, b) for a, b in self._untrusted if b > latest]
        pieces_t: list[np.ndarray] = []
        pieces_d: list[np.ndarray] = []
        spans: list[Span] = []
        edges = np.flatnonzero(np.diff(untrusted.astype(np.int8))) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(times)], strict=True):
            if hi <= lo:
                continue
            if untrusted[lo]:
                if self._bcg_fed:
                    out_t, out_d, out_s = self.bcg.flush()
                    pieces_t.append(out_t)
                    pieces_d.append(out_d)
                    spans.extend(out_s)
                    self._bcg_fed = False
                pieces_t.append(times[lo:hi])
                pieces_d.append(np.asarray(data[lo:hi], dtype=np.float32))
                spans.append((float(times[lo]), float(times[hi - 1]) + 1.0 / self.sfreq, "bcg_uncorrected"))
            else:
                out_t, out_d, out_s = self.bcg.process(times[lo:hi], data[lo:hi])
                self._bcg_fed = True
                pieces_t.append(out_t)
                pieces_d.append(out_d)
                spans.extend(out_s)
        if final and self._bcg_fed:
            out_t, out_d, out_s = self.bcg.flush()
            pieces_t.append(out_t)
            pieces_d.append(out_d)
            spans.extend(out_s)
            self._bcg_fed = False
        if not pieces_t:
            return times[:0], np.empty((0, data.shape[1]), dtype=np.float32), spans
        return np.concatenate(pieces_t), np.concatenate(pieces_d).astype(np.float32), spans

    def _after_gradient(
        self, times: np.ndarray, data: np.ndarray, spans: list[Span], *, final: bool
    ) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        spans = list(spans)
        if self.decimator is not None:
            times, data = self.decimator.process(times, data)
            if final:
                more_times, more = self.decimator.flush()
                times, data = np.concatenate([times, more_times]), np.concatenate([data, more])
        if self.bcg is not None:
            times, data, bcg_spans = self._bcg_stage(times, data, spans, final=final)
            spans.extend(bcg_spans)
        return times, np.asarray(data, dtype=np.float32), spans
