"""Online removal of the MR gradient artefact from EEG recorded inside the scanner, chunk by chunk.

Every slice the scanner acquires switches its gradients and induces in each EEG lead a voltage far
larger than the EEG, repeating with every volume. :class:`GradientCorrector` subtracts it as the
samples arrive:

1. **Average artefact subtraction** (Allen et al. 2000): a template per channel, the mean of the last
   ``template_volumes`` volumes aligned on their R128 triggers. It is causal: the template that
   corrects volume ``k`` is fixed when volume ``k`` starts, from volumes before ``k`` only.

   A mean of N volumes also averages what is not locked to them, the EEG and above all the pulse
   artefact (tens of µV, mostly below 10 Hz): subtracting it puts 1/N of their power back, in
   volume-rate lines dense enough to be a broadband noise. So when ``slices_per_volume`` is known
   (``slice_template``), the template is built from the slices instead: every slice of an EPI volume
   plays the same gradient program, so the mean of the inner slices of the volume mean, tiled at every
   slice, averages N times the slice count epochs, and what it injects lies only on the slice
   frequency's harmonics, at a few hundredths of the EEG's power. The slice period is measured on the
   volume mean (autocorrelation peak, then a regression of the sub-sample positions of the slices),
   so a quiet gap at the end of the volume and a clock mismatch are followed; the mean slice's offset
   is removed (dG/dt integrates to zero over a slice; an offset would be averaged EEG). The volume
   mean's part the slice template does not explain (the edges of the slice train, slices unlike the
   others) is added back above ``VOLUME_HIGHPASS`` Hz only, where the EEG and the pulse artefact are
   small. Trade-offs: volume-locked artefact below ``VOLUME_HIGHPASS`` Hz that is not slice-periodic
   is left; with a gap, the first slice is taken to start at the trigger. When the slice template
   explains the volume mean badly (misfit over ``PERIODIC_RATIO`` of its power) the volume mean is
   used as it is.
2. **Sub-sample alignment**: the trigger sits on the amplifier's sample grid, the true onset does not
   (no sync box, scanner and amplifier clocks a few ppm apart). Each segment's fractional shift
   against the template is estimated by Gauss-Newton on the template's derivative; the template is
   shifted to it by a windowed-sinc fractional delay, and each volume joins the template shifted back
   to the template's phase. The whole template is delayed once per volume, by its first segment's
   shift, with its slope in the delay; the other segments' shifts, a small part of a sample away
   (the clocks drift little within a volume), are linear least-squares fits around it.
3. **Amplitude fit**: head movement changes how much of each gradient axis a lead picks up, and a
   causal template lags behind it. Each channel's residual is regressed on the template's main
   components across channels (the gradient axes) above ``OBS_HIGHPASS`` Hz, where the artefact
   dominates the EEG; the mixing found is smoothed over ``FIT_SECONDS`` and removed over the whole
   band.
4. **Optimal basis set** (after Niazy et al. 2005): per channel, principal components of the
   previous volumes' residuals, above ``OBS_HIGHPASS`` Hz so that they hold no EEG, found once per
   volume over the whole volume (the products between the residuals are kept as they come); their
   part over each segment is fitted to the segment's residual by least squares and subtracted.

Latency: a volume is corrected segment by segment (its slices when ``slices_per_volume`` is known,
else blocks of ``BLOCK_SECONDS``), each as soon as its last sample and its volume's trigger are in.
A sample is therefore held at most one segment (:attr:`GradientCorrector.latency`) after its
volume's trigger is known; the samples of a volume's last segment also wait for the next trigger
(or for ``trigger_wait``, when it does not come). Samples with no volume (before the first trigger,
after the scanner stops) are passed through after ``trigger_wait``. No sample is held longer than
:attr:`GradientCorrector.max_hold`.

Triggers: the repetition time is measured from consecutive triggers (``tr`` is only the first
guess); a trigger interval off it by more than ``TR_CHANGE`` starts the template again, and so do two
volumes in a row whose start does not look like the template (another sequence after a pause). When
the samples pass the expected onset by ``trigger_wait`` with no trigger, the trigger is inferred at
the expected onset if the samples there look like the template; otherwise the scanner stopped.

Output stretches it could not fully correct are reported as spans ``(start, end, kind)`` (seconds,
``end`` one sample period after the stretch's last sample): ``"gradient_uncorrected"`` (passed
through inside a volume: template not ready, volume unlike the template, trigger missing and not
inferable, trigger too late) and ``"gradient_trigger_inferred"`` (corrected with a trigger inferred
from the repetition time). Non-finite samples stay non-finite and keep their volume out of the
template; channels not marked ``corrected`` pass through untouched. A trigger arriving after its
volume's first samples went out flags them in the call where it is found, so a span may cover
samples returned by earlier calls; spans of consecutive calls may abut.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage, signal, special

UNCORRECTED = "gradient_uncorrected"
TRIGGER_INFERRED = "gradient_trigger_inferred"

BLOCK_SECONDS = 0.064  # segment length when the slices of a volume are not known
MAX_SEGMENT_SECONDS = 0.1  # slices longer than this are split (bounds the latency)
MAX_TR_SECONDS = 10.0  # a lone trigger with no second one within this is not a volume series
SHIFT_HALF_TAPS = 12  # the fractional-delay filter spans 2 * 12 + 1 samples
SHIFT_ITERATIONS = 3  # Gauss-Newton steps at a volume's first segment (a linear fit at the others)
MAX_SHIFT = 1.5  # samples
RELINEARISE = 0.1  # samples: a segment's shift this far from its volume's is refined on the segment alone
FIT_COMPONENTS = 3  # gradient-axis components of the amplitude fit (x, y, z)
FIT_SECONDS = 1.0  # time constant of the amplitude fit
AXIS_MIN_POWER = 0.05  # segments with less artefact than this (of the template's mean) leave the fit alone
OBS_HIGHPASS = 70.0  # Hz: the optimal basis set acts above this (Niazy et al.)
OBS_SIGNIFICANCE = 4.0  # a residual component is kept when its variance exceeds this many medians
PRESENCE_RATIO = 0.25  # residual / signal power under which a segment carries the artefact
TR_CHANGE = 0.002  # a trigger interval off the repetition time by more than this restarts the template
TR_HISTORY = 8  # trigger intervals averaged for the repetition time
SLICE_SEARCH = 0.7  # the slice period is sought from this fraction of ``tr / slices_per_volume`` up
VOLUME_HIGHPASS = 70.0  # Hz: the volume template adds to the slice template only above this
VOLUME_HIGHPASS_ORDER = 4  # Butterworth order of that high-pass (applied forward and backward)
FRACTION_STEPS = 64  # slices are placed to 1/64 of a sample (-64 dB at 60 Hz for the worst rounding)
PERIOD_REFRESH = 8  # volumes between two measurements of the slice period
PERIODIC_RATIO = 0.1  # slice template's misfit / volume template's power above which it is not used


def shift_kernel(delta: float, half: int = SHIFT_HALF_TAPS) -> np.ndarray:
    """Taps ``k`` of a fractional delay: ``y[n] = sum_j x[n + j] k[j + half]`` is ``x(n - delta)``.

    A Kaiser-windowed sinc (``beta = 8``) normalised to unit gain at 0 Hz.
    """
    lags = np.arange(-half, half + 1) + delta
    window = special.i0(8.0 * np.sqrt(np.clip(1 - (lags / (half + 1)) ** 2, 0, None))) / special.i0(8.0)
    taps = np.sinc(lags) * window
    return np.asarray(taps / taps.sum())


@lru_cache(maxsize=4 * FRACTION_STEPS)
def _fraction_kernel(steps: int) -> np.ndarray:
    """``shift_kernel(steps / FRACTION_STEPS)``, kept."""
    return shift_kernel(steps / FRACTION_STEPS)


def _shift_and_slope(delta: float) -> np.ndarray:
    """The fractional delay's taps and their derivative in ``delta``, shape (2, taps)."""
    step = 1e-4
    slope = (shift_kernel(delta + step) - shift_kernel(delta - step)) / (2 * step)
    return np.stack([shift_kernel(delta), slope])


def _filter(values: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Apply ``taps`` (one row or several) along the last axis without padding: ``taps - 1`` shorter.

    Several rows give one output per row, stacked first.
    """
    half = (taps.shape[-1] - 1) // 2
    end = values.shape[-1] - half
    if taps.ndim == 1:
        return ndimage.correlate1d(values, taps, axis=-1, mode="nearest")[..., half:end]
    rows = [ndimage.correlate1d(values, row, axis=-1, mode="nearest")[..., half:end] for row in taps]
    return np.stack(rows)


def _highpass_basis(length: int, sfreq: float) -> np.ndarray:
    """Orthonormal DCT-II vectors below ``OBS_HIGHPASS`` Hz over ``length`` samples, shape (length, k)."""
    count = max(1, math.ceil(2 * length * OBS_HIGHPASS / sfreq))
    count = min(count, length)
    n = np.arange(length)
    basis = np.cos(np.pi * np.arange(count)[None, :] * (n[:, None] + 0.5) / length)
    return basis / np.linalg.norm(basis, axis=0)


def estimate_shift(
    x: np.ndarray, template: np.ndarray, start: float = 0.0, iterations: int = SHIFT_ITERATIONS
) -> tuple[float, np.ndarray]:
    """Fractional delay (samples) of ``x`` against ``template`` by Gauss-Newton on the derivative.

    Parameters
    ----------
    x : np.ndarray, shape (channels, n)
        The recorded segment.
    template : np.ndarray, shape (channels, n + 2 * SHIFT_HALF_TAPS)
        The template over the same positions with ``SHIFT_HALF_TAPS`` samples either side.
    start : float
        Initial estimate.
    iterations : int
        Gauss-Newton steps.

    Returns
    -------
    delta : float
        ``delta`` such that ``x(n)`` is closest to ``template(n - delta)``, within ``MAX_SHIFT``.
    shifted : np.ndarray, shape (channels, n)
        The template delayed by ``delta`` (to first order in the last step).
    """
    delta = start
    shifted = np.empty_like(x)
    for _ in range(iterations):
        shifted, slope = _filter(template, _shift_and_slope(delta))
        residual = x - shifted
        residual = residual - residual.mean(axis=1, keepdims=True)
        centred = slope - slope.mean(axis=1, keepdims=True)
        norm = float(np.sum(centred * centred))
        if not norm > 0:
            break
        step = float(np.clip(delta + float(np.sum(residual * centred)) / norm, -MAX_SHIFT, MAX_SHIFT)) - delta
        delta += step
        shifted = shifted + step * slope
    return delta, shifted


class _Tape:
    """Raw samples from absolute index ``start`` on, appended in chunks, trimmed from the front."""

    def __init__(self, n_channels: int) -> None:
        self.data = np.empty((n_channels, 4096))
        self.times = np.empty(4096)
        self.start = 0  # absolute index of column 0
        self.size = 0  # columns filled

    @property
    def end(self) -> int:
        return self.start + self.size

    def append(self, times: np.ndarray, values: np.ndarray, keep_from: int) -> None:
        drop = max(0, min(keep_from, self.end) - self.start)
        if self.size + times.size > self.times.size:
            if drop:
                self.data[:, : self.size - drop] = self.data[:, drop : self.size]
                self.times[: self.size - drop] = self.times[drop : self.size]
                self.start += drop
                self.size -= drop
            if self.size + times.size > self.times.size:
                capacity = max(2 * self.times.size, self.size + times.size)
                data, stamps = np.empty((self.data.shape[0], capacity)), np.empty(capacity)
                data[:, : self.size] = self.data[:, : self.size]
                stamps[: self.size] = self.times[: self.size]
                self.data, self.times = data, stamps
        self.data[:, self.size : self.size + times.size] = values
        self.times[self.size : self.size + times.size] = times
        self.size += times.size

    def get(self, a: int, b: int) -> np.ndarray:
        return self.data[:, a - self.start : b - self.start]

    def time(self, index: int, sfreq: float) -> float:
        """Timestamp of sample ``index`` (extrapolated at the nominal rate outside the tape)."""
        if self.start <= index < self.end:
            return float(self.times[index - self.start])
        anchor = min(max(index, self.start), self.end - 1)
        return float(self.times[anchor - self.start]) + (index - anchor) / sfreq


class _Ring:
    """The last ``size`` arrays of one shape, in a preallocated block (their order is not kept).

    With ``keep_total``, their sum is kept up to date as they come and go, and summed afresh whenever
    the ring wraps so that rounding cannot build up. With ``keep_gram`` (arrays of shape (c, n)), the
    inner products of every two of them, row by row: ``gram[r, i, j]`` for the arrays in slots ``i``
    and ``j`` (slots ``0 .. count - 1`` hold arrays), kept in float64.
    """

    def __init__(self, size: int, keep_total: bool = False, keep_gram: bool = False) -> None:
        self.size = size
        self.block: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.gram: np.ndarray | None = None
        self.keep_total = keep_total
        self.keep_gram = keep_gram
        self.count = 0
        self._next = 0

    def __len__(self) -> int:
        return self.count

    def push(self, item: np.ndarray) -> None:
        if self.block is None or self.block.shape[1:] != item.shape:
            # The products need the arrays in double precision; the others are kept in single.
            dtype = np.float64 if self.keep_gram else np.float32
            self.block = np.empty((self.size, *item.shape), dtype=dtype)
            self.total = np.zeros(item.shape) if self.keep_total else None
            self.gram = np.zeros((item.shape[0], self.size, self.size)) if self.keep_gram else None
            self.count = self._next = 0
        index = self._next
        slot = self.block[index]
        if self.total is not None and self.count == self.size:
            self.total -= slot
        slot[...] = item
        self._next = (self._next + 1) % self.size
        self.count = min(self.count + 1, self.size)
        if self.total is not None:
            if self._next == 0:
                np.sum(self.block, axis=0, dtype=np.float64, out=self.total)
            else:
                self.total += slot
        if self.gram is not None:
            products = (self.block[: self.count].transpose(1, 0, 2) @ slot[:, :, None])[:, :, 0]  # (c, count)
            self.gram[:, index, : self.count] = products
            self.gram[:, : self.count, index] = products

    def items(self) -> np.ndarray:
        assert self.block is not None
        return self.block[: self.count]

    def mean(self) -> np.ndarray:
        """The mean of the arrays held (float64; needs ``keep_total``)."""
        assert self.total is not None and self.count > 0
        return self.total / self.count

    def clear(self) -> None:
        self.count = self._next = 0
        if self.total is not None:
            self.total[...] = 0.0


@dataclass
class _Volume:
    onset: int  # sample index of the trigger
    inferred: bool
    end: int | None = None  # the next volume's onset, once known
    started: bool = False
    template: np.ndarray | None = None  # fixed at the first segment; None: not ready
    basis_count: int = 0  # residual examples the optimal basis set may use
    basis: np.ndarray | None = None  # the optimal basis set, (channels, k, length)
    residual: np.ndarray | None = None
    shifts: list[tuple[float, int]] = field(default_factory=list)
    last_shift: float = 0.0
    aligned: tuple[np.ndarray, np.ndarray] | None = None  # the template delayed by ``aligned_at``, its slope
    aligned_at: float = 0.0
    valid: bool = True  # may join the template
    spatial: np.ndarray | None = None  # the template's main spatial components, (channels, k)
    component_power: float = 0.0  # their mean power over the template


class GradientCorrector:
    """Causal gradient-artefact correction of a raw EEG stream, the same output for any chunking.

    Parameters
    ----------
    sfreq : float
        Rate of the raw stream in Hz.
    n_channels : int
        Channels of the stream.
    corrected : np.ndarray of bool, shape (n_channels,)
        Channels corrected (EEG, EOG, ECG); the others (misc, stim) pass through untouched.
    tr : float, optional
        Repetition time in seconds; measured from the triggers when not given.
    slices_per_volume : int, optional
        Slices per volume: segments are then slices; else blocks of ``BLOCK_SECONDS``.
    template_volumes : int
        Volumes averaged in the template.
    min_template_volumes : int
        Volumes needed before correcting.
    residual_components : int
        Principal components of the optimal basis set (0: none).
    trigger_wait : float
        Seconds a sample waits for a trigger that would put it in a volume.
    infer_missing_triggers : bool
        Infer a missing trigger from the repetition time when the data carries the artefact there.
    slice_template : bool
        Build the template from the slices (see the module's description) when ``slices_per_volume``
        is known; False: the mean of whole volumes.
    """

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        corrected: np.ndarray,
        *,
        tr: float | None = None,
        slices_per_volume: int | None = None,
        template_volumes: int = 20,
        min_template_volumes: int = 4,
        residual_components: int = 4,
        trigger_wait: float = 0.5,
        infer_missing_triggers: bool = True,
        slice_template: bool = True,
    ) -> None:
        mask = np.asarray(corrected, dtype=bool)
        if mask.shape != (n_channels,):
            raise ValueError(
                f"corrected must hold one flag per channel ({n_channels}), got shape {mask.shape}"
            )
        if not (math.isfinite(sfreq) and sfreq > 0):
            raise ValueError(f"the sampling rate must be a positive number, got {sfreq}")
        if tr is not None and not (math.isfinite(tr) and tr > 0):
            raise ValueError(f"the repetition time must be a positive number of seconds, got {tr}")
        if slices_per_volume is not None and slices_per_volume < 1:
            raise ValueError(f"slices per volume must be at least 1, got {slices_per_volume}")
        if not 1 <= min_template_volumes <= template_volumes:
            raise ValueError(
                f"need 1 <= min_template_volumes <= template_volumes, got {min_template_volumes} and "
                f"{template_volumes}"
            )
        if residual_components < 0:
            raise ValueError(f"residual_components must be >= 0, got {residual_components}")
        if not trigger_wait > 0:
            raise ValueError(f"trigger_wait must be a positive number of seconds, got {trigger_wait}")
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self._corr = np.flatnonzero(mask)
        self.tr = tr
        self.slices_per_volume = slices_per_volume
        self.template_volumes = int(template_volumes)
        self.min_template_volumes = int(min_template_volumes)
        self.residual_components = int(residual_components)
        self.trigger_wait = float(trigger_wait)
        self.infer_missing_triggers = bool(infer_missing_triggers)
        self.slice_template = bool(slice_template) and slices_per_volume is not None
        self._volume_highpass = signal.butter(
            VOLUME_HIGHPASS_ORDER, min(VOLUME_HIGHPASS, 0.4 * self.sfreq), "highpass", fs=self.sfreq,
            output="sos",
        )  # fmt: skip
        self._volume_highpass32 = self._volume_highpass.astype(np.float32)
        self._wait = max(1, round(trigger_wait * self.sfreq))
        self._h = SHIFT_HALF_TAPS
        self._highpass: dict[int, np.ndarray] = {}
        self.reset()

    # -- public interface -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (a stream restart): templates, triggers and held samples."""
        self._tape = _Tape(self.n_channels)
        self._n_out = 0
        self._stamps: list[float] = []  # triggers not yet placed on samples
        self._queue: list[tuple[int, bool]] = []  # placed triggers after the current volume
        self._cur: _Volume | None = None
        self._last_onset: int | None = None  # the latest real or inferred onset
        self._closing: list[_Volume] = []  # volumes ended, waiting for samples to join the template
        self._mode = "idle"  # between volumes: idle, stopped or artefact (no trigger, artefact seen)
        self._intervals: deque[float] = deque(maxlen=TR_HISTORY)
        self._bounds_for: tuple[float, np.ndarray] | None = None  # the segments' starts, kept for one TR
        self._length: int | None = None  # template length in samples
        self._ring = _Ring(self.template_volumes, keep_total=True)  # volumes at the template's phase
        # Their residuals above OBS_HIGHPASS, with the products between them (channel by channel).
        self._residuals = _Ring(self.template_volumes, keep_gram=True)
        self._template: np.ndarray | None = None
        self._slice_period: float | None = None  # samples, measured on the volume template
        self._period_age = 0  # templates composed since it was measured
        self._residual_estimate: np.ndarray | None = None
        self._mixing: np.ndarray | None = None
        self._mismatches = 0  # consecutive volumes unlike the template
        self._shift_history: deque[float] = deque(maxlen=8)
        self._inferred = 0
        self._uncorrected = 0
        self._late = 0
        self._last_span_end = -1
        self._out_parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._spans: list[tuple[float, float, str]] = []

    @property
    def latency(self) -> float:
        """Seconds a sample is held after its volume's trigger is known: the longest segment.

        A trigger reaching the corrector after its volume's samples adds its own delay (up to
        ``trigger_wait``; later than that the samples go out uncorrected and flagged).
        """
        bounds = self._bounds()
        if bounds is None:
            return MAX_SEGMENT_SECONDS
        last = (self._tr_samples() or 0.0) - bounds[-1]
        return float(max(np.diff(bounds).max(initial=0), last)) / self.sfreq

    @property
    def max_hold(self) -> float:
        """The longest any sample is held, whatever the triggers do: one segment plus ``trigger_wait``."""
        return self.latency + self.trigger_wait

    def add_triggers(self, stamps: np.ndarray) -> None:
        """Volume onsets (seconds, the samples' clock), in any number, as they arrive."""
        for stamp in np.asarray(stamps, dtype=np.float64).ravel():
            if math.isfinite(stamp):
                bisect.insort(self._stamps, float(stamp))

    def process(
        self, times: np.ndarray, data: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, str]]]:
        """Feed a chunk; return the samples now ready.

        Parameters
        ----------
        times : np.ndarray, shape (n,)
            Timestamps of the chunk's samples.
        data : np.ndarray, shape (n, n_channels)
            Samples in µV.

        Returns
        -------
        times, data : np.ndarray, shapes (m,) and (m, n_channels)
            The next samples in order, each exactly once.
        spans : list of (start, end, kind)
            Output stretches not fully corrected (see the module's description).
        """
        stamps = np.asarray(times, dtype=np.float64).ravel()
        values = np.asarray(data, dtype=np.float64)
        if values.shape != (stamps.size, self.n_channels):
            raise ValueError(
                f"expected data of shape ({stamps.size}, {self.n_channels}) for {stamps.size} timestamps, "
                f"got {values.shape}"
            )
        if stamps.size:
            self._tape.append(stamps, values.T, self._keep_from())
            self._advance()
        return self._collect()

    def flush(self) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, str]]]:
        """At the end of a recording: every sample still held, corrected where its data allows."""
        self._advance()
        end = self._tape.end
        volume, tr = self._cur, self._tr_samples()
        if volume is not None and volume.started and tr is not None:
            expected = volume.onset + round(tr)
            limit = min(end, expected if volume.end is None else volume.end)
            bounds = self._bounds()
            while self._n_out < limit and bounds is not None:
                j = int(np.searchsorted(bounds, self._n_out - volume.onset, side="right"))
                stop = limit if j >= bounds.size else min(limit, volume.onset + int(bounds[j]))
                self._correct(volume, self._n_out, stop)
            if self._n_out < end and self._artefact_at(expected):
                self._mode = "artefact"
        elif volume is not None:
            self._emit(self._n_out, end, UNCORRECTED)
        if self._n_out < end:
            self._emit(self._n_out, end, UNCORRECTED if self._mode == "artefact" else None)
        result = self._collect()
        self.reset()
        return result

    def status(self) -> dict[str, Any]:
        """The corrector's state, JSON-ready.

        ``template_ready`` (enough volumes to correct), ``volumes_averaged`` (volumes in the
        template), ``tr_estimate`` (s: measured from the triggers, else ``tr``, else None),
        ``triggers_inferred`` and ``triggers_late`` (since the start or the last reset),
        ``segments_uncorrected`` (stretches output flagged ``"gradient_uncorrected"``),
        ``residual_power_ratio`` (dB: power of the artefact left, estimated as the running mean of
        the corrected volumes, against the template's; the EEG's own power divided by about
        ``2 * template_volumes`` bounds it from below, as the running mean holds the EEG too) and
        ``alignment`` (the last volumes' sub-sample shifts against the template, in samples).
        """
        ratio_db = None
        if self._residual_estimate is not None and self._template is not None:
            inner = self._template[:, self._h : self._h + self._residual_estimate.shape[1]]
            power = float(np.mean(inner.astype(np.float64) ** 2))
            if power > 0:
                residual = float(np.mean(self._residual_estimate**2))
                ratio_db = round(10 * math.log10(max(residual, 1e-30) / power), 2)
        tr = self._tr_samples()
        return {
            "template_ready": len(self._ring) >= self.min_template_volumes,
            "volumes_averaged": len(self._ring),
            "tr_estimate": None if tr is None else round(tr / self.sfreq, 6),
            "triggers_inferred": self._inferred,
            "triggers_late": self._late,
            "segments_uncorrected": self._uncorrected,
            "residual_power_ratio": ratio_db,
            "alignment": [round(s, 4) for s in self._shift_history],
        }

    # -- samples out ------------------------------------------------------------------------------

    def _collect(self) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, str]]]:
        parts, spans = self._out_parts, self._spans
        self._out_parts, self._spans = [], []
        if not parts:
            return np.empty(0), np.empty((0, self.n_channels)), spans
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), spans

    def _emit(self, a: int, b: int, kind: str | None, values: np.ndarray | None = None) -> None:
        """Output samples ``a .. b - 1`` (raw unless ``values``), flagged ``kind``."""
        if b <= a:
            return
        if values is None:
            values = self._tape.get(a, b).copy()
        self._out_parts.append(
            (self._tape.times[a - self._tape.start : b - self._tape.start].copy(), values.T)
        )
        if kind == UNCORRECTED:
            self._uncorrected += 1
        if kind is not None:
            self._flag(a, b, kind)
        self._n_out = b

    def _flag(self, a: int, b: int, kind: str) -> None:
        start, end = self._tape.time(a, self.sfreq), self._tape.time(b - 1, self.sfreq) + 1 / self.sfreq
        if self._spans and self._last_span_end == a and self._spans[-1][2] == kind:
            self._spans[-1] = (self._spans[-1][0], end, kind)
        else:
            self._spans.append((start, end, kind))
        self._last_span_end = b

    def _keep_from(self) -> int:
        """The first sample still needed: not yet output, or in a volume still to join the template."""
        keep = self._n_out
        for volume in self._closing:
            keep = min(keep, volume.onset - 2 * self._h)
        if self._cur is not None:
            keep = min(keep, self._cur.onset - 2 * self._h)
        return keep

    # -- triggers and volumes ---------------------------------------------------------------------

    def _tr_samples(self) -> float | None:
        if self._intervals:
            return math.fsum(self._intervals) / len(self._intervals)
        return None if self.tr is None else self.tr * self.sfreq

    def _bounds(self) -> np.ndarray | None:
        """Start positions of a volume's segments (the last runs to the next volume)."""
        tr = self._tr_samples()
        if tr is None:
            return None
        if self._bounds_for is not None and self._bounds_for[0] == tr:
            return self._bounds_for[1]
        seconds = tr / self.sfreq
        if self.slices_per_volume is not None:
            per_slice = math.ceil(seconds / self.slices_per_volume / MAX_SEGMENT_SECONDS - 1e-9)
            count = self.slices_per_volume * max(1, per_slice)
        else:
            count = max(1, round(seconds / BLOCK_SECONDS))
        bounds = np.round(np.arange(count) * tr / count).astype(np.int64)
        bounds.flags.writeable = False
        self._bounds_for = (tr, bounds)
        return bounds

    def _place_triggers(self) -> None:
        """Turn trigger stamps covered by samples into sample indices (the nearest sample)."""
        tape = self._tape
        if tape.size == 0:
            return
        last_time = float(tape.times[tape.size - 1])
        while self._stamps and self._stamps[0] <= last_time:
            stamp = self._stamps.pop(0)
            first_time = float(tape.times[0])
            if stamp < first_time:
                index = tape.start + round((stamp - first_time) * self.sfreq)
            else:
                k = int(np.searchsorted(tape.times[: tape.size], stamp))
                if k > 0 and stamp - tape.times[k - 1] <= tape.times[k] - stamp:
                    k -= 1
                index = tape.start + k
            self._enqueue(index, inferred=False)

    def _tolerance(self) -> int:
        """Samples within which two triggers are the same volume's."""
        return max(2, round(0.05 * (self._tr_samples() or self.sfreq)))

    def _enqueue(self, index: int, inferred: bool) -> None:
        tolerance = self._tolerance()
        reference = [self._last_onset] if self._last_onset is not None else []
        reference += [q[0] for q in self._queue]
        if any(abs(index - r) <= tolerance for r in reference):
            return  # the same volume again (a trigger confirming an inferred one)
        if self._last_onset is not None and index < self._last_onset:
            return  # out of order: older than the volume under way
        bisect.insort(self._queue, (index, inferred))

    def _advance(self) -> None:
        """Output everything the samples and triggers now allow."""
        while True:
            self._place_triggers()
            self._finalize_ready()
            if self._cur is None:
                if self._queue:
                    index, inferred = self._queue.pop(0)
                    self._start_volume(index, inferred)
                    continue
                stop = self._tape.end - self._wait
                if stop > self._n_out:
                    self._emit(self._n_out, stop, UNCORRECTED if self._mode == "artefact" else None)
                return
            if not self._step(self._cur):
                return

    def _start_volume(self, index: int, inferred: bool) -> None:
        """Begin the volume of trigger ``index``; samples before it go out as they are."""
        previous = self._last_onset
        if previous is not None and not inferred:
            self._check_interval(index - previous)
        if index >= self._n_out:
            self._emit(self._n_out, index, UNCORRECTED if self._mode == "artefact" else None)
        elif max(index, 0) < self._n_out:  # the trigger came after its first samples went out
            self._late += 1
            if self._mode != "artefact":  # else already flagged as they went out
                self._flag(max(index, 0), self._n_out, UNCORRECTED)
                self._uncorrected += 1
        self._cur = _Volume(onset=index, inferred=inferred)
        self._last_onset = index
        self._mode = "idle"
        if inferred:
            self._inferred += 1

    def _check_interval(self, interval: int) -> None:
        """Learn the repetition time from consecutive triggers; restart the template when it changes."""
        tr = self._tr_samples()
        if tr is None:
            self._intervals.append(float(interval))
            return
        if interval > 1.5 * tr:
            return  # triggers missed, or a pause between runs
        if abs(interval - tr) > max(2.0, TR_CHANGE * tr):
            self._restart_template()
            self._intervals.clear()
        self._intervals.append(float(interval))

    def _restart_template(self) -> None:
        """Forget the template and what was learnt with it (another sequence)."""
        self._ring.clear()
        self._residuals.clear()
        self._closing.clear()
        self._template = None
        self._slice_period = None
        self._length = None
        self._residual_estimate = None
        self._mixing = None
        self._mismatches = 0

    def _step(self, volume: _Volume) -> bool:
        """Advance the current volume by one segment; False when its samples are not in yet."""
        tr = self._tr_samples()
        if volume.end is None and self._queue:
            head = self._queue[0][0]
            # A trigger well after the expected onset leaves the expected one missing (decided below).
            if tr is None or head <= volume.onset + round(tr) + self._tolerance():
                volume.end = head
        if volume.end is not None and self._n_out >= volume.end:
            self._close(volume)
            return True
        bounds = self._bounds()
        if tr is None or bounds is None:  # a first trigger: its volume is held until the next or released
            if volume.end is not None:
                if not volume.started:
                    self._open(volume, float(volume.end - volume.onset))
                self._emit(self._n_out, volume.end, UNCORRECTED)
                return True
            stop = self._tape.end - self._wait
            if self._tape.end - volume.onset > MAX_TR_SECONDS * self.sfreq:
                volume.end = max(self._n_out, volume.onset + 1)
                self._mode = "stopped"
                return True
            if stop > self._n_out:
                self._emit(self._n_out, stop, UNCORRECTED)
            return False
        position = self._n_out - volume.onset
        j = int(np.searchsorted(bounds, position, side="right"))
        if j < bounds.size:
            stop = volume.onset + int(bounds[j])
            if volume.end is not None:
                stop = min(stop, volume.end)
        elif volume.end is not None:
            stop = volume.end
        else:
            expected = volume.onset + round(tr)
            if self._tape.end > expected + self._wait:
                self._missing_trigger(volume, expected)
                return True
            return False
        if self._tape.end < stop:
            return False
        if not volume.started:
            if self._closing:
                return False  # the previous volume still waits for its last samples
            self._open(volume, tr)
        self._correct(volume, self._n_out, stop)
        return True

    def _missing_trigger(self, volume: _Volume, expected: int) -> None:
        """No trigger at the expected onset: infer it, or decide the scanner stopped."""
        present = self._artefact_at(expected)
        if present and self.infer_missing_triggers:
            bisect.insort(self._queue, (expected, True))
        else:
            volume.end = expected
            self._mode = "artefact" if present else "stopped"

    def _artefact_at(self, onset: int) -> bool:
        """Whether the samples from ``onset`` on look like the start of a volume (the template)."""
        if self._template is None:
            return False
        bounds = self._bounds()
        length = (
            int(bounds[1]) if bounds is not None and bounds.size > 1 else round(BLOCK_SECONDS * self.sfreq)
        )
        length = min(length, self._tape.end - onset, self._template.shape[1] - 2 * self._h)
        if length < 4 * self._h:
            return False
        x = self._tape.get(onset, onset + length)[self._corr]
        template = self._template[:, : length + 2 * self._h].astype(np.float64)
        finite = np.isfinite(x).all(axis=1)
        if not finite.any():
            return False
        x, template = x[finite], template[finite]
        _, shifted = estimate_shift(x, template)
        residual = x - shifted
        residual -= residual.mean(axis=1, keepdims=True)
        centred = x - x.mean(axis=1, keepdims=True)
        return bool(np.sum(residual**2) < PRESENCE_RATIO * np.sum(centred**2))

    def _open(self, volume: _Volume, tr: float) -> None:
        """Fix the volume's template (from earlier volumes only) at its first segment.

        A volume whose start does not look like the template is left uncorrected (and out of the
        template); two in a row mean another sequence: the template starts again from them.
        """
        if self._template is not None and not self._artefact_at(volume.onset):
            self._mismatches += 1
            if self._mismatches < 2:
                volume.valid = False
            else:
                self._restart_template()
        else:
            self._mismatches = 0
        if self._length is None:
            self._length = math.ceil(tr) + 2
        volume.started = True
        if len(self._ring) >= self.min_template_volumes and self._template is not None and volume.valid:
            volume.template = self._template.astype(np.float64)
            volume.basis_count = len(self._residuals)
            volume.basis = self._volume_basis(volume.basis_count)
            volume.residual = np.zeros((self._corr.size, self._length), dtype=np.float32)
            inner = volume.template[:, self._h : -self._h]
            count = min(FIT_COMPONENTS, inner.shape[0])
            _, vectors = np.linalg.eigh(inner @ inner.T)
            volume.spatial = vectors[:, -count:]
            volume.component_power = float(np.mean(np.sum((volume.spatial.T @ inner) ** 2, axis=0)))
        if self._residual_estimate is None:
            self._residual_estimate = np.zeros((self._corr.size, self._length))

    def _close(self, volume: _Volume) -> None:
        self._cur = None
        volume.aligned = volume.basis = None  # corrected: only its samples and residual are still needed
        if volume.started and volume.valid and volume.onset - 2 * self._h >= self._tape.start:
            self._closing.append(volume)

    def _finalize_ready(self) -> None:
        """Volumes whose samples are all in join the template, shifted to its phase."""
        while self._closing and self._length is not None:
            volume = self._closing[0]
            stop = volume.onset + self._length + 2 * self._h
            if self._tape.end < stop:
                return
            self._closing.pop(0)
            record = self._tape.get(volume.onset - 2 * self._h, stop)[self._corr]
            if not np.isfinite(record).all():
                continue
            if volume.shifts:
                weights = np.array([n for _, n in volume.shifts], dtype=np.float64)
                delta = float(np.dot([d for d, _ in volume.shifts], weights) / weights.sum())
            elif self._template is not None:
                inner = record[:, self._h : -self._h]
                delta, _ = estimate_shift(inner[:, self._h : -self._h], self._template.astype(np.float64))
            else:
                delta = 0.0
            self._shift_history.append(delta)
            self._ring.push(_filter(record, shift_kernel(-delta)))
            self._template = np.asarray(self._compose(self._ring.mean()), dtype=np.float32)
            if volume.residual is not None:
                self._residuals.push(volume.residual)

    # -- the slice template -----------------------------------------------------------------------

    def _compose(self, volume: np.ndarray) -> np.ndarray:
        """The template used: the slice template, plus the volume template's rest above VOLUME_HIGHPASS.

        ``volume`` is the mean of the volumes in the ring, shape (channels, length + 2 * half taps),
        column ``i`` at position ``i - SHIFT_HALF_TAPS`` from the onset. Falls back to it when the
        slices are unknown or the volume is not a train of like slices.
        """
        slices = self.slices_per_volume
        tr = self._tr_samples()
        if not self.slice_template or slices is None or slices < 4 or tr is None:
            return volume
        period = self._measure_period(volume, tr / slices)
        if period is None:
            return volume
        tiled = self._tile(volume, period, slices, tr)
        rest = (volume - tiled).ravel()
        flat = volume.ravel()
        if not float(np.dot(rest, rest)) < PERIODIC_RATIO * float(np.dot(flat, flat)):
            self._slice_period = None
            return volume
        # Single precision: the template is kept in it, and the filter runs twice as fast.
        rest32 = rest.reshape(volume.shape).astype(np.float32)
        tiled += signal.sosfiltfilt(self._volume_highpass32, rest32, axis=-1)
        return tiled

    def _measure_period(self, volume: np.ndarray, guess: float) -> float | None:
        """Slice period (samples) of a volume template, the first slice starting at the onset.

        Found first as the autocorrelation's peak from ``SLICE_SEARCH * guess`` to ``guess`` (a quiet
        gap at the end of the volume shortens it), then refined to a small fraction of a sample by
        regressing the sub-sample positions of the inner slices against their number.
        """
        h = self._h
        inner = volume[:, h:-h]
        size = inner.shape[1]
        slices = self.slices_per_volume or 0
        period = self._slice_period
        self._period_age += 1
        if period is not None and self._period_age < PERIOD_REFRESH:
            return period
        self._period_age = 0
        if period is None:
            low, high = max(8 * h, int(SLICE_SEARCH * guess)), min(size // 2, math.ceil(guess) + 2)
            if high <= low + 2:
                return None
            spectrum = np.fft.rfft(inner, n=2 * size, axis=1)
            correlation = np.fft.irfft(np.sum(np.abs(spectrum) ** 2, axis=0), 2 * size)
            lags = np.arange(low, high + 1)
            score = correlation[lags] / (size - lags)
            best = int(np.argmax(score[1:-1])) + 1
            curve = score[best - 1 : best + 2]
            bend = curve[0] - 2 * curve[1] + curve[2]
            period = float(lags[best]) + (0.5 * (curve[0] - curve[2]) / bend if bend < 0 else 0.0)
        width = math.floor(period) - 2 * h - 2
        if width < 4 * h or (slices - 1) * period + h > size:
            return None
        middle = slices // 2
        reference = round(middle * period)
        base = inner[:, reference - h : reference + width + h]
        numbers = np.arange(1, slices - 1)
        positions = np.empty(numbers.size)
        for n, k in enumerate(numbers):
            start = round(k * period)
            delta, _ = estimate_shift(inner[:, start : start + width], base, 0.0, 2)
            positions[n] = start + delta
        slope = float(np.polyfit(numbers, positions, 1)[0])
        if not abs(slope - period) < 1.0:
            return None
        self._slice_period = slope
        return slope

    def _tile(self, volume: np.ndarray, period: float, slices: int, tr: float) -> np.ndarray:
        """The mean slice of the inner slices, repeated at every slice of the volume.

        The margins hold the neighbouring volumes' slices (``tr`` samples away); the gap at the end
        of a volume, if any, is zero.
        """
        h = self._h
        width = math.ceil(period) + 2
        # Slice starts are rounded to 1 / FRACTION_STEPS of a sample, so that slices sharing a fraction
        # share one fractional-delay filter.
        sums: dict[int, np.ndarray] = {}
        count = 0
        for k in range(1, slices - 1):
            steps = round(k * period * FRACTION_STEPS)
            first = steps // FRACTION_STEPS
            segment = volume[:, first - h : first + width + 3 * h]
            if segment.shape[1] < width + 4 * h:
                break
            fraction = steps - first * FRACTION_STEPS
            sums[fraction] = sums[fraction] + segment if fraction in sums else segment.astype(np.float64)
            count += 1
        tiled = np.zeros_like(volume)
        if count == 0:
            return tiled
        mean = np.zeros((volume.shape[0], width + 2 * h))
        for fraction, total in sums.items():
            mean += _filter(total, _fraction_kernel(-fraction))
        mean /= count
        # dG/dt integrates to zero over a slice: an offset is the averaged EEG's, which a gap would
        # turn into a volume-rate square wave.
        mean -= mean[:, h : h + round(period)].mean(axis=1, keepdims=True)
        end = volume.shape[1] - h
        shifted: dict[int, np.ndarray] = {}
        for volume_start, k in ((v * tr, k) for v in (-1, 0, 1) for k in range(slices)):
            steps = round((volume_start + k * period) * FRACTION_STEPS)
            first = -(-steps // FRACTION_STEPS)  # the first sample at or after the slice's start
            a = max(-h, first)
            b = min(end, -(-round((volume_start + (k + 1) * period) * FRACTION_STEPS) // FRACTION_STEPS))
            if b <= a:
                continue
            fraction = steps - first * FRACTION_STEPS  # in (-FRACTION_STEPS, 0]
            if fraction not in shifted:
                shifted[fraction] = _filter(mean, _fraction_kernel(fraction))
            tiled[:, a + h : b + h] = shifted[fraction][:, a - first : b - first]
        return tiled

    # -- the correction ---------------------------------------------------------------------------

    def _correct(self, volume: _Volume, a: int, b: int) -> None:
        """Correct samples ``a .. b - 1`` of ``volume`` and output them."""
        template = volume.template
        length = self._length or 0
        if template is None or a - volume.onset >= length:
            self._emit(a, b, UNCORRECTED)
            return
        if b - volume.onset > length:  # beyond the template (a longer interval than ever seen)
            self._correct(volume, a, volume.onset + length)
            self._emit(volume.onset + length, b, UNCORRECTED)
            return
        pa, pb = a - volume.onset, b - volume.onset
        raw = self._tape.get(a, b)
        out = raw.copy()
        x = raw[self._corr]
        finite = np.isfinite(x).all(axis=1)
        segment = template[:, pa : pb + 2 * self._h]
        delta = volume.last_shift
        if finite.all() and pb - pa >= 4:
            delta, shifted = self._align(volume, x, pa, pb)
        else:
            if finite.any() and pb - pa >= 4:
                delta, _ = estimate_shift(x[finite], segment[finite], delta)
            shifted = _filter(segment, shift_kernel(delta))
        all_finite = bool(finite.all())
        residual = x - shifted
        masked = residual if all_finite else np.where(finite[:, None], residual, 0.0)
        residual -= self._axis_fit(volume, shifted, masked)
        kept = residual if all_finite else np.where(finite[:, None], residual, 0.0)
        low = self._low_basis(pb - pa)
        high = kept - (kept @ low) @ low.T
        cleaned = residual - self._basis_fit(volume, pa, pb, high)
        out[self._corr] = cleaned
        if not all_finite:
            volume.valid = False
        if volume.residual is not None:
            volume.residual[:, pa:pb] = high
        volume.shifts.append((delta, pb - pa))
        volume.last_shift = delta
        if self._residual_estimate is not None and all_finite:
            alpha = 1.0 / self.template_volumes
            part = self._residual_estimate[:, pa:pb]
            part += alpha * (cleaned - part)
        self._emit(a, b, TRIGGER_INFERRED if volume.inferred else None, out)

    def _align(self, volume: _Volume, x: np.ndarray, pa: int, pb: int) -> tuple[float, np.ndarray]:
        """The segment's fractional shift against the template, and the template shifted by it.

        At the volume's first segment the shift is found by Gauss-Newton, and the whole template is
        delayed by it once, with its slope in the delay. The clocks drift little within a volume, so
        each segment's shift is then a linear least-squares fit around that one (within
        ``RELINEARISE`` samples of it; further, the segment is filtered on its own).
        """
        assert volume.template is not None
        h = self._h
        if volume.aligned is None:
            segment = volume.template[:, pa : pb + 2 * h]
            start, _ = estimate_shift(x, segment, volume.last_shift, SHIFT_ITERATIONS)
            taps = _shift_and_slope(start)
            volume.aligned = (_filter(volume.template, taps[0]), _filter(volume.template, taps[1]))
            volume.aligned_at = start
        base, slope = volume.aligned[0][:, pa:pb], volume.aligned[1][:, pa:pb]
        residual = x - base
        residual -= residual.mean(axis=1, keepdims=True)
        centred = slope - slope.mean(axis=1, keepdims=True)
        norm = float(np.sum(centred * centred))
        if not norm > 0:
            return volume.aligned_at, base
        step = float(np.sum(residual * centred)) / norm
        delta = float(np.clip(volume.aligned_at + step, -MAX_SHIFT, MAX_SHIFT))
        if abs(delta - volume.aligned_at) > RELINEARISE:
            return estimate_shift(x, volume.template[:, pa : pb + 2 * h], delta, 1)
        return delta, base + (delta - volume.aligned_at) * slope

    def _axis_fit(self, volume: _Volume, shifted: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The residual explained by the template's gradient-axis components, mixed across channels.

        Each channel's residual is regressed on the segment's components (the template's main
        spatial components) above ``OBS_HIGHPASS`` Hz, where the artefact dominates the EEG; the
        channel-by-channel mixing this gives is smoothed over ``FIT_SECONDS`` (a head moves slowly)
        and applied to the whole band.
        """
        spatial = volume.spatial
        if spatial is None:
            return np.zeros_like(residual)
        components = spatial.T @ shifted  # (k, n)
        if not float(np.vdot(components, components)) >= (
            AXIS_MIN_POWER * volume.component_power * components.shape[1]
        ):
            # Too little artefact here (a gap between volumes) to measure the mixing: keep it.
            return np.zeros_like(residual) if self._mixing is None else np.asarray(self._mixing @ shifted)
        low = self._low_basis(shifted.shape[1])
        high = components - (components @ low) @ low.T
        gram = high @ high.T
        if not np.all(np.isfinite(gram)):
            return np.zeros_like(residual)
        values, vectors = np.linalg.eigh(gram)
        if not values[0] * 1e12 >= values[-1]:  # ill-conditioned (or not positive definite)
            return np.zeros_like(residual)
        # ``high`` has no part below OBS_HIGHPASS, so the residual's low part drops out of the products.
        coefficients = ((residual @ high.T) @ vectors / values) @ vectors.T  # (c, k)
        mixing = coefficients @ spatial.T  # channel by channel
        weight = 1 - math.exp(-shifted.shape[1] / (FIT_SECONDS * self.sfreq))
        if self._mixing is None:
            self._mixing = np.zeros_like(mixing)
        self._mixing += weight * (mixing - self._mixing)
        return np.asarray(self._mixing @ shifted)

    def _low_basis(self, length: int) -> np.ndarray:
        low = self._highpass.get(length)
        if low is None:
            low = self._highpass[length] = _highpass_basis(length, self.sfreq)
        return low

    def _basis_fit(self, volume: _Volume, pa: int, pb: int, high: np.ndarray) -> np.ndarray:
        """Optimal basis set: the previous volumes' residual components above ``OBS_HIGHPASS`` Hz.

        ``high`` is the segment's residual above ``OBS_HIGHPASS`` Hz, (channels, n), fitted by least
        squares to the part of the volume's components (:meth:`_volume_basis`) over its samples.
        """
        if volume.basis is None or pb - pa < 8:
            return np.zeros_like(high)
        part = volume.basis[:, :, pa:pb]  # (c, k, n)
        values, vectors = np.linalg.eigh(part @ part.transpose(0, 2, 1))
        # Components with (next to) nothing over this segment are left out of the fit.
        usable = values > 1e-9 * np.maximum(values[:, -1:], 1e-300)
        inverse = np.where(usable, 1.0 / np.where(usable, values, 1.0), 0.0)
        projected = vectors.transpose(0, 2, 1) @ (part @ high[:, :, None])  # (c, k, 1)
        coefficients = vectors @ (inverse[:, :, None] * projected)
        return np.asarray((coefficients.transpose(0, 2, 1) @ part)[:, 0, :])

    def _volume_basis(self, examples: int) -> np.ndarray | None:
        """The optimal basis set of a volume: (channels, k, length), rows orthonormal.

        Per channel, the main principal components of the last ``examples`` volumes' residuals (above
        ``OBS_HIGHPASS`` Hz) over the whole volume, those well above the median variance; None when
        there are too few.
        """
        count = min(self.residual_components, examples)
        if count == 0 or examples < 2:
            return None
        gram = self._residuals.gram
        assert gram is not None
        values, vectors = np.linalg.eigh(gram[:, :examples, :examples])
        # Components well above the examples' median variance are artefact; the rest would be EEG.
        floor = OBS_SIGNIFICANCE * np.median(values, axis=1, keepdims=True)
        values, vectors = values[:, -count:], vectors[:, :, -count:]
        scale = np.where(values > np.maximum(floor, 1e-300), values, np.inf)
        weights = vectors.transpose(0, 2, 1) / np.sqrt(scale)[:, :, None]  # (c, k, examples)
        return np.asarray(weights @ self._residuals.items()[:examples].transpose(1, 0, 2))


def offline_aas(data: np.ndarray, sfreq: float, onsets: np.ndarray, n_volumes: int) -> np.ndarray:
    """Classic offline average artefact subtraction: a centred moving template over whole volumes.

    Each volume's template is the mean of the ``n_volumes`` nearest other volumes (``n_volumes // 2``
    either side where the recording allows), aligned on the triggers to the sample, with no
    sub-sample alignment and no residual removal: the reference the online correction is compared to.

    Parameters
    ----------
    data : np.ndarray, shape (n, channels)
        The whole recording.
    sfreq : float
        Its rate (unused by the arithmetic; kept for the signature's symmetry with the online one).
    onsets : np.ndarray of int
        Sample index of every volume's trigger.
    n_volumes : int
        Volumes averaged per template.

    Returns
    -------
    np.ndarray, shape (n, channels)
        The corrected recording (samples outside the volumes unchanged).
    """
    del sfreq
    onsets = np.asarray(onsets, dtype=np.int64)
    if onsets.size < 2:
        raise ValueError("offline AAS needs at least two volume triggers")
    length = int(np.min(np.diff(onsets)))
    onsets = onsets[onsets + length <= data.shape[0]]
    epochs = np.stack([data[o : o + length] for o in onsets])  # (volumes, length, channels)
    out = np.array(data, dtype=np.float64, copy=True)
    half = n_volumes // 2
    for k, onset in enumerate(onsets):
        lo = max(0, min(k - half, onsets.size - 1 - 2 * half))
        others = [i for i in range(lo, min(onsets.size, lo + 2 * half + 1)) if i != k]
        out[onset : onset + length] -= epochs[others].mean(axis=0)
    return out
