"""Online ballistocardiogram (BCG) correction: an optimal basis set fitted to every heartbeat.

Inside the scanner every heartbeat moves the head and the electrode leads in the static field and
adds a pulse-locked waveform (50-200 microvolts, 0.1-0.8 s after the R peak) to every EEG channel.
It is removed as in Niazy et al. (2005), causally, beat by beat:

- **Beats.** R peaks come from the ECG channel (:class:`stream.rpeaks.RPeakDetector`). Where the ECG
  is poor (flat, non-finite, a lead off, noise: no plausible beat near a position), beats are found
  in the EEG itself with the current multichannel BCG template as a matched filter (the template's
  least-squares amplitude in the EEG, summed over channels, peaking near 1 at a beat); those spans
  are flagged ``"bcg_beats_from_eeg"``. Once that amplitude has been steady at the ECG's beats, an
  ECG beat where it is low or peaks more than 12 ms away is vetoed (a noise peak the detector took
  for a beat). With no template yet and no ECG the EEG passes through and is flagged
  ``"bcg_uncorrected"``, as are stretches where a beat is missing (no beat for 1.5 RR intervals).
- **Template and fit** (an optimal basis set, Niazy et al. 2005, fitted across channels). Each
  beat's epoch is ``[peak - before, peak + after]``. The basis comes from the previous
  ``template_beats`` beats' epochs (causal): their mean, spatially whitened (the EEG's covariance
  across channels, from the last corrected epochs, shrunk towards the identity), is projected on
  the BCG's main spatial patterns (the main eigenvectors of the whitened epochs' spatial second
  moment, which every beat's BCG raises and the whitened EEG raises evenly), and only the components
  above the EEG left in the mean are kept (at most ``components``; the EEG's level is the largest
  singular value of the same average taken with alternating signs, which cancels the BCG). Those
  components and the slope of their sum (a beat a few ms or a fraction of a sample early or late)
  are fitted to the epoch by generalised least squares: one gain per basis vector shared by all
  channels, spatially whitened, beside each channel's offset and linear trend (fitted, not removed).
  A beat mixes the same few movements, each a little stronger or weaker than on average, which moves
  its BCG out of the span of the template's own components but not out of the span of every kept
  spatial pattern with every kept time course. Those extra directions (orthogonal to the basis) are
  fitted too, each gain shrunk by the share of the BCG's beat-to-beat change in the beats' spread
  along it (spread of the template beats' deviations from their mean, less the EEG's level there,
  from the last corrected epochs' power spectrum): where the beats differ by little more than the
  EEG, the EEG is left alone.

  Why not Niazy's per-channel principal components of the deviations from the mean: with 20-60 µV
  of BCG over 8-20 µV of EEG, 30 beats' deviations are mostly EEG, so their first components, and
  per-channel gains, fit and remove the epoch's EEG (1/f EEG has most of its power in a few smooth
  shapes over 0.9 s) and add the mean's own EEG (1/sqrt(30) of it). A BCG comes from a few head
  and lead movements seen by every electrode: its epoch is of low rank across channels and time,
  so the reduced template drops most of the EEG the mean kept, the shared gains follow a beat's
  strength, shape mix and timing, and the whitening keeps the EEG's strongest spatial patterns out
  of the gains. A heart-rate change is followed as the last beats replace the older ones.
- **Overlapping epochs** (heart rates above 60 / (before + after) = 67 bpm): each beat's artefact is
  its own BCG only. The artefacts fitted to the earlier beats are taken out of an epoch where they
  overlap it before it is fitted, and an epoch joins the template once the next beat's artefact is
  taken out of its end too (one beat later). Every sample is then corrected by the sum of the
  artefacts of the beats whose epochs cover it.
- **Latency.** A sample is output once every beat whose epoch covers it has been decided and fitted:
  ``before + after + lookahead`` seconds after it (1.1 s by default), where ``lookahead`` covers
  confirming a beat in the EEG (0.2 s) or in the ECG. The output is the input, in order, each
  sample once, delayed by exactly that.

Non-finite input samples stay non-finite; an epoch with a non-finite sample in a channel is left out
of that channel's template. Decisions depend only on sample numbers and values, so any chunking
gives the same output.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stream.rpeaks import RPeakDetector

UNCORRECTED = "bcg_uncorrected"
BEATS_FROM_EEG = "bcg_beats_from_eeg"
EEG_DOMINANCE = 0.2  # s: a beat found in the EEG is the matched filter's largest value within this
EEG_THRESHOLD = 0.5  # least-squares template amplitude a beat found in the EEG must exceed
EEG_SPACING = 0.6  # RR intervals: the least distance from the previous beat to a beat found in the EEG
ECG_NEARBY = 0.5  # RR intervals (at most MAX_NEARBY s): no EEG beat this close to an ECG beat
MAX_NEARBY = 0.4  # s
ALIGNMENT = 0.012  # s: an ECG beat the EEG's template peaks farther from is vetoed (when steady)
STEADY_AMPLITUDE = 0.2  # spread of the template's amplitude at ECG beats under which the EEG can veto one
MISSING_BEAT = 1.5  # RR intervals without a beat after which uncovered samples are flagged
RR_HISTORY = 8  # intervals for the median RR
LONGEST_RR = 2.0  # s: longer intervals are gaps, not heartbeats, for the median RR
NOISE_FACTOR = 1.0  # a template component is kept when above the largest of the EEG left in the mean
ECG_BLOCK = 0.1  # s: the ECG goes to the R-peak detector in blocks this long (fewer, larger calls)
SHRINKAGE = 0.1  # of the EEG's spatial covariance, towards a multiple of the identity
# The EEG's level along an extra basis direction (from each channel alone) is taken this many times
# over: the whitened EEG is not quite white across channels, and only a clear change is fitted.
EXTRA_MARGIN = 3.0

Span = tuple[float, float, str]


@dataclass
class _Beat:
    """A beat of the correction sequence and the artefact fitted to it."""

    peak: int  # sample number
    source: str  # "ecg" or "eeg"
    artefact: np.ndarray | None  # (n_corrected, epoch) or None: template not ready (its own BCG only)
    rr: float  # median RR (samples) when it was added


class BcgCorrector:
    """Causal, chunk-wise BCG correction with an optimal basis set per heartbeat.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz (at least 100 Hz; after gradient correction and decimation, ~250 Hz).
    n_channels : int
        Channels of the stream.
    corrected : np.ndarray of bool, shape (n_channels,)
        Which channels are corrected (EEG); the others (ECG, EOG, misc) pass through, delayed alike.
    ecg_channel : int | None
        Index of the ECG channel, or None (beats then come only from the EEG, once a template
        exists, which without an ECG it never does: the EEG then passes through, flagged).
    template_beats : int
        Previous beats whose epochs form the basis.
    min_template_beats : int
        Beats needed before correcting.
    components : int
        Most spatio-temporal components of the template in the basis (those above the EEG left in
        it are used); 0: the whole mean template, not reduced.
    before, after : float
        Epoch around each R peak, in s.
    """

    def __init__(
        self,
        sfreq: float,
        n_channels: int,
        corrected: np.ndarray,
        ecg_channel: int | None,
        *,
        template_beats: int = 30,
        min_template_beats: int = 8,
        components: int = 3,
        before: float = 0.1,
        after: float = 0.8,
    ) -> None:
        if not np.isfinite(sfreq) or sfreq < 100.0:
            raise ValueError(f"BCG correction needs a rate of at least 100 Hz, got {sfreq}")
        mask = np.asarray(corrected, dtype=bool).reshape(-1)
        if mask.size != n_channels:
            raise ValueError(f"'corrected' has {mask.size} entries for {n_channels} channels")
        if ecg_channel is not None and not 0 <= ecg_channel < n_channels:
            raise ValueError(f"ECG channel {ecg_channel} is not one of the {n_channels} channels")
        if not 2 <= min_template_beats <= template_beats:
            raise ValueError(
                "need 2 <= min_template_beats <= template_beats, "
                f"got {min_template_beats} and {template_beats}"
            )
        if components < 0:
            raise ValueError(f"components must be >= 0, got {components}")
        if not (0.0 <= before <= 0.5 and 0.2 <= after <= 1.5):
            raise ValueError(
                f"the epoch must be 0-0.5 s before and 0.2-1.5 s after the peak, got {before}, {after}"
            )
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self.ecg_channel = ecg_channel
        self.template_beats = int(template_beats)
        self.min_template_beats = int(min_template_beats)
        self.components = int(components)
        self._picks = np.flatnonzero(mask)
        self._before = round(before * self.sfreq)
        self._after = round(after * self.sfreq)
        self._epoch = self._before + self._after + 1
        self._dom = round(EEG_DOMINANCE * self.sfreq)
        self._fft_length = 1 << (2 * self._epoch - 1).bit_length()
        # Each rfft bin's share of a sum over the whole spectrum (the bins at 0 and Nyquist once).
        self._fft_weights = np.full(self._fft_length // 2 + 1, 2.0 / self._fft_length)
        self._fft_weights[[0, -1]] = 1.0 / self._fft_length
        # An epoch's offset and linear trend (orthonormal rows).
        ramp = np.linspace(-1.0, 1.0, self._epoch)
        trend = np.stack([np.ones(self._epoch), ramp])
        self._trend = trend / np.linalg.norm(trend, axis=1, keepdims=True)
        self._max_nearby = round(MAX_NEARBY * self.sfreq)
        self._detector = RPeakDetector(self.sfreq) if ecg_channel is not None else None
        self._ecg_block = max(1, round(ECG_BLOCK * self.sfreq))
        # A beat is known once the block holding its confirmation has been fed to the detector.
        ecg_latency = self._detector.max_latency + self._ecg_block - 1 if self._detector is not None else 0
        # An ECG beat is used when confirmed by `peak + after + lookahead - max_nearby`: then every
        # ECG beat that can matter to a decision at a position is known when that decision is taken.
        self._lookahead = max(self._dom, ecg_latency + self._max_nearby - self._after)
        self._delay = self._before + self._after + self._lookahead
        self.reset()

    @property
    def latency(self) -> float:
        """Seconds each sample is held: ``before + after + lookahead``."""
        return self._delay / self.sfreq

    def reset(self) -> None:
        """Forget everything (a stream restart): the next sample is sample 0."""
        if self._detector is not None:
            self._detector.reset()
        self._count = 0
        self._base = 0
        self._data = np.empty((self.n_channels, 0))
        self._times = np.empty(0)
        self._frontier = 0  # beats at positions before it are decided
        self._emitted = 0  # samples output
        self._ecg: deque[int] = deque()  # usable ECG beats not yet passed by the frontier
        self._ecg_recent: deque[int] = deque()  # usable ECG beats the frontier passed, recent ones
        self._beats: deque[_Beat] = deque()
        self._history: deque[np.ndarray] = deque(maxlen=self.template_beats)  # raw epochs
        self._residuals: deque[np.ndarray] = deque(maxlen=self.template_beats)  # epochs after correction
        # Each epoch's spatial second moment (channels x channels, detrended; NaN for a non-finite channel),
        # computed once, for the BCG's spatial subspace (raw epochs) and the EEG's covariance (residuals).
        self._history_moments: deque[np.ndarray] = deque(maxlen=self.template_beats)
        self._residual_moments: deque[np.ndarray] = deque(maxlen=self.template_beats)
        # The residuals' power spectra, spatially whitened, mean over channels (None where not finite):
        # the EEG's level along the basis' extra directions.
        self._residual_spectra: deque[np.ndarray | None] = deque(maxlen=self.template_beats)
        self._last_whitener: np.ndarray | None = None
        self._rr: deque[int] = deque(maxlen=RR_HISTORY)
        self._rr_median: float | None = None  # median of _rr, kept until it changes
        self._ecg_fed = 0  # ECG samples given to the detector (whole blocks)
        self._ecg_times = np.empty(0)  # the ECG not fed yet
        self._ecg_values = np.empty(0)
        self._ecg_ended = False  # flushing: the detector has had the whole ECG
        self._ecg_amplitudes: deque[float] = deque(maxlen=2 * RR_HISTORY)  # template amplitude at ECG beats
        self._filter: tuple[np.ndarray, float] | None = None  # matched filter from the history
        self._amplitudes: tuple[np.ndarray, int, np.ndarray] | None = None  # its values from a position on
        self._beats_added = 0
        self._waiting: tuple[int, np.ndarray, np.ndarray | None] | None = None  # the last beat's epoch

    # ------------------------------------------------------------------ feeding
    def process(self, times: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        """Feed a chunk; return the samples now corrected and the spans not fully corrected.

        Parameters
        ----------
        times : np.ndarray, shape (n,)
            Timestamps of the samples.
        data : np.ndarray, shape (n, n_channels)
            The samples.

        Returns
        -------
        times, data : np.ndarray, shapes (m,) and (m, n_channels)
            The next ``m`` samples, in order, each once, ``latency`` s after they came in (float32).
        spans : list of (start, end, kind)
            Times (s) of the output's stretches whose BCG was not removed (``"bcg_uncorrected"``) or
            was removed at beats found in the EEG (``"bcg_beats_from_eeg"``); ``end`` is the last
            such sample's time plus one sample period. Stretches are merged within one call only.
        """
        stamps = np.asarray(times, dtype=np.float64).reshape(-1)
        values = np.asarray(data, dtype=np.float64)
        if values.ndim != 2 or values.shape != (stamps.size, self.n_channels):
            raise ValueError(f"expected data of shape ({stamps.size}, {self.n_channels}), got {values.shape}")
        if stamps.size:
            self._data = np.concatenate([self._data, values.T], axis=1)
            self._times = np.concatenate([self._times, stamps])
            self._count += stamps.size
            if self._detector is not None and self.ecg_channel is not None and not self._ecg_ended:
                self._feed_ecg(stamps, values[:, self.ecg_channel])
        self._advance(self._count - self._after - self._lookahead)
        out = self._emit(self._frontier - self._before)
        self._trim()
        return out

    def flush(self) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        """At the end of a recording: output every sample still held, then forget the state.

        The recording is continued by non-finite samples, so the last beats are fitted on the part
        of their epochs that exists.
        """
        if self._count == 0:
            out = self.process(np.empty(0), np.empty((0, self.n_channels)))
            self.reset()
            return out
        if self._detector is not None:
            # The ECG's end: its last beats are decided on what there is (no padding for the detector).
            beats = self._detector.process(self._ecg_times, self._ecg_values) if self._ecg_values.size else []
            for beat in beats + self._detector.flush():
                self._offer_ecg_beat(beat.sample, beat.confirmed_at, beat.plausible)
            self._ecg_ended = True
        real = self._count
        period = 1.0 / self.sfreq
        last = float(self._times[-1])
        pad = np.full((self._delay, self.n_channels), np.nan)
        stamps = last + period * np.arange(1, self._delay + 1)
        times, data, spans = self.process(stamps, pad)
        cut = times.size - max(0, self._emitted - real)  # the padding's own samples are not output
        end = float(times[cut - 1]) + period if cut > 0 else last + period
        spans = [(s, min(e, end), kind) for s, e, kind in spans if s < end]
        self.reset()
        return times[:cut], data[:cut], spans

    # ------------------------------------------------------------------ beats
    def _feed_ecg(self, times: np.ndarray, ecg: np.ndarray) -> None:
        """Give the detector the ECG's whole blocks (whose ends are fixed sample numbers) now complete."""
        assert self._detector is not None
        self._ecg_times = np.concatenate([self._ecg_times, times])
        self._ecg_values = np.concatenate([self._ecg_values, ecg])
        ready = self._count // self._ecg_block * self._ecg_block - self._ecg_fed
        if ready <= 0:
            return
        beats = self._detector.process(self._ecg_times[:ready], self._ecg_values[:ready])
        self._ecg_times = self._ecg_times[ready:]
        self._ecg_values = self._ecg_values[ready:]
        self._ecg_fed += ready
        for beat in beats:
            self._offer_ecg_beat(beat.sample, beat.confirmed_at, beat.plausible)

    def _offer_ecg_beat(self, sample: float, confirmed: int, plausible: bool) -> None:
        peak = int(np.floor(sample + 0.5))
        known = (confirmed // self._ecg_block + 1) * self._ecg_block - 1  # its block's last sample
        # Usable when plausible and known by the time decisions near it are taken (else dropped:
        # a beat found by search-back after its epoch began to be output).
        if plausible and known <= peak + self._after + self._lookahead - self._max_nearby:
            if peak >= self._frontier and (not self._ecg or peak > self._ecg[-1]):
                self._ecg.append(peak)

    def _median_rr(self) -> float:
        if self._rr_median is None:
            self._rr_median = float(np.median(self._rr)) if self._rr else self.sfreq
        return self._rr_median

    def _advance(self, target: int) -> None:
        """Decide the beats at positions before ``target``, in order."""
        while self._frontier < target:
            next_ecg = self._ecg[0] if self._ecg else None
            stop = target if next_ecg is None or next_ecg >= target else next_ecg
            found = self._scan_eeg(self._frontier, stop)
            if found is not None:
                self._add_beat(found, "eeg")
                self._frontier = found + 1
                continue
            if next_ecg is not None and next_ecg < target:
                self._ecg.popleft()
                if self._confirmed_by_eeg(next_ecg):
                    self._ecg_recent.append(next_ecg)
                    self._add_beat(next_ecg, "ecg")
                    self._frontier = next_ecg + 1
                continue
            self._frontier = target
        while self._ecg_recent and self._ecg_recent[0] < self._frontier - 2 * self._max_nearby:
            self._ecg_recent.popleft()

    def _scan_eeg(self, start: int, stop: int) -> int | None:
        """The first position in ``[start, stop)`` where the EEG shows a beat the ECG did not."""
        matched = self._matched_filter()
        if matched is None or stop <= start:
            return None
        rr = self._median_rr()
        if self._beats:
            start = max(start, self._beats[-1].peak + int(np.ceil(EEG_SPACING * rr)))
        if stop <= start:
            return None
        nearby = min(round(ECG_NEARBY * rr), self._max_nearby)
        lo, hi = start - self._dom, stop + self._dom  # amplitudes needed for dominance
        amplitude = self._amplitude(lo, hi, *matched)
        width = 2 * self._dom + 1
        windows = sliding_window_view(amplitude, width)
        centre = windows[:, self._dom]
        dominant = (
            (centre > windows[:, : self._dom].max(axis=1))
            & (centre >= windows[:, self._dom + 1 :].max(axis=1))
            & (centre > EEG_THRESHOLD)
        )
        ecg = np.asarray(list(self._ecg_recent) + list(self._ecg), dtype=np.int64)
        for offset in np.flatnonzero(dominant):
            position = start + int(offset)
            if ecg.size and np.abs(ecg - position).min() <= nearby:
                continue
            return position
        return None

    def _confirmed_by_eeg(self, peak: int) -> bool:
        """Whether the EEG agrees with an ECG beat (else it is a false or misplaced beat).

        It does not when the template's amplitude there is under ``EEG_THRESHOLD`` or peaks more
        than ``ALIGNMENT`` away. Judged only while the template's amplitude at the last ECG beats
        has been steady (a weak BCG gives a noisy amplitude and no verdict); the amplitudes seen
        are kept for that.
        """
        matched = self._matched_filter()
        if matched is None:
            return True
        reach = max(1, round(ALIGNMENT * self.sfreq))
        lo, hi = peak - 2 * reach, peak + 2 * reach + 1
        if not np.isfinite(self._segment(lo - self._before, hi - self._before + self._epoch - 1)).all():
            return True  # part of the EEG missing (or the recording's end): its amplitude says nothing
        around = self._compute_amplitude(lo, hi, *matched)
        amplitude = float(around[2 * reach])
        seen = np.asarray(self._ecg_amplitudes)
        steady = seen.size >= self.min_template_beats and float(seen.std()) <= STEADY_AMPLITUDE
        if steady and (amplitude < EEG_THRESHOLD or abs(int(np.argmax(around)) - 2 * reach) > reach):
            return False
        self._ecg_amplitudes.append(amplitude)
        return True

    def _matched_filter(self) -> tuple[np.ndarray, float] | None:
        """The mean template of the history, each channel's mean removed, and its energy."""
        if len(self._history) < self.min_template_beats:
            return None
        if self._filter is None:
            epochs = np.stack(list(self._history))
            valid = np.isfinite(epochs).all(axis=2)  # (beats, channels)
            counts = valid.sum(axis=0)
            mean = np.where(valid[:, :, None], epochs, 0.0).sum(axis=0) / np.maximum(counts, 1)[:, None]
            mean[counts == 0] = 0.0
            mean -= mean.mean(axis=1, keepdims=True)
            energy = float(np.sum(mean * mean))
            self._filter = (mean, energy)
        return self._filter if self._filter[1] > 0 else None

    def _amplitude(self, lo: int, hi: int, template: np.ndarray, energy: float) -> np.ndarray:
        """Least-squares amplitude of the template with its epoch at each position in ``[lo, hi)``.

        Positions already computed with the same template are reused (each value is computed alone,
        so reusing it changes nothing).
        """
        cached = self._amplitudes
        if cached is not None and cached[0] is template and cached[1] <= lo <= cached[1] + cached[2].size:
            known = cached[2][lo - cached[1] :]
            if known.size < hi - lo:
                known = np.concatenate(
                    [known, self._compute_amplitude(lo + known.size, hi, template, energy)]
                )
        else:
            known = self._compute_amplitude(lo, hi, template, energy)
        self._amplitudes = (template, lo, known)
        return known[: hi - lo]

    def _compute_amplitude(self, lo: int, hi: int, template: np.ndarray, energy: float) -> np.ndarray:
        segment = np.nan_to_num(self._segment(lo - self._before, hi - self._before + self._epoch - 1))
        windows = sliding_window_view(segment, self._epoch, axis=1)  # (channels, hi - lo, epoch)
        # One dot product per position and channel, summed over channels in a fixed order: the value
        # at a position does not depend on how many positions are computed together.
        per_channel = np.einsum("cnk,ck->cn", windows, template)
        return np.asarray(per_channel.sum(axis=0) / energy)

    def _segment(self, lo: int, hi: int) -> np.ndarray:
        """Corrected channels' samples ``lo`` .. ``hi - 1``; non-finite outside what was fed."""
        out = np.full((self._picks.size, hi - lo), np.nan)
        a, b = max(lo, self._base), min(hi, self._count)
        if b > a:
            out[:, a - lo : b - lo] = self._data[self._picks, a - self._base : b - self._base]
        return out

    def _add_beat(self, peak: int, source: str) -> None:
        rr = self._median_rr()
        if self._beats:
            interval = peak - self._beats[-1].peak
            if interval <= LONGEST_RR * self.sfreq:
                self._rr.append(interval)
                self._rr_median = None
        start = peak - self._before
        epoch = self._segment(start, peak + self._after + 1)
        # The earlier beats' fitted artefacts are taken out of this epoch where theirs overlap it, so
        # that each beat's template and fit hold its own BCG only (heart rates above 67 bpm).
        for earlier in self._beats:
            end = earlier.peak + self._after + 1
            if earlier.artefact is not None and end > start:
                offset = start - (earlier.peak - self._before)
                epoch[:, : end - start] -= earlier.artefact[:, offset:]
        artefact = self._fit(epoch)
        self._beats.append(_Beat(peak, source, artefact, rr))
        self._beats_added += 1
        # The previous beat's epoch joins the template once this beat's artefact is taken out of
        # its end too (heart rates where the next BCG begins inside an epoch).
        if self._waiting is not None:
            previous, held, fitted = self._waiting
            end = previous + self._after + 1
            if artefact is not None and end > start:
                held[:, start - (previous - self._before) :] -= artefact[:, : end - start]
            self._history.append(held)
            self._history_moments.append(self._moment(held))
            self._filter = None
            if fitted is not None:
                residual = held - fitted
                self._residuals.append(residual)
                self._residual_moments.append(self._moment(residual))
                self._residual_spectra.append(self._spectrum(residual))
        self._waiting = (peak, epoch, artefact)

    def _fit(self, epoch: np.ndarray) -> np.ndarray | None:
        """The optimal-basis-set fit to ``epoch`` from the previous beats (None: too few yet).

        The basis: the template's main spatial components (each channel's mean epoch, spatially
        whitened, projected on the BCG's main spatial patterns that stand out of the EEG left in it)
        and the slope of their sum. One gain per basis vector for all channels, fitted by generalised
        least squares (spatially whitened) beside each channel's offset and linear trend. Beyond
        them, each kept spatial pattern with each kept time course, shrunk (see ``_gains``).
        """
        if len(self._history) < self.min_template_beats:
            return None
        epochs = np.stack(list(self._history)).transpose(1, 0, 2)  # (channels, beats, samples)
        valid = np.isfinite(epochs).all(axis=2)
        counts = valid.sum(axis=1)
        usable = counts >= self.min_template_beats  # channels with enough clean epochs
        if not usable.any():
            return np.zeros_like(epoch)
        picks = np.flatnonzero(usable)
        chosen = epochs if picks.size == epochs.shape[0] else epochs[picks]
        valid = valid[picks]
        counts = counts[picks]
        if valid.all():  # the usual case
            mean = chosen.mean(axis=1)
            deviations = chosen - mean[:, None, :]
        else:
            inside = valid[:, :, None]
            mean = np.where(inside, chosen, 0.0).sum(axis=1) / counts[:, None]
            deviations = np.where(inside, chosen - mean[:, None, :], 0.0)
        whitener, unwhitener = self._whitener(picks, deviations, valid)
        self._last_whitener = whitener if picks.size == self._picks.size else None
        extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        if self.components > 0:
            parts, spatial, temporal = self._components(picks, mean, deviations, counts, whitener, unwhitener)
            smooth = np.sum(parts, axis=0)
            if spatial.shape[1] > 1:
                # Every kept spatial pattern with every kept time course: a beat mixes the same few
                # movements, each a little stronger or weaker than on average.
                pairs = spatial.T[:, None, :, None] * temporal[None, :, None, :]
                extra = (pairs.reshape(-1, *mean.shape), spatial, temporal, unwhitener)
        else:
            parts = [mean]
            smooth = mean
        # The template's slope: a beat a fraction of a sample (or a few ms) early or late is the
        # template plus this times the shift, so timing and sub-sample alignment are fitted too.
        parts.append(np.gradient(smooth, axis=1))
        basis = np.stack(parts)  # (vectors, usable channels, samples)
        fitted = self._gains(basis, extra, epoch[picks], picks, whitener, deviations, valid)
        artefact = np.zeros_like(epoch)
        if fitted is not None:
            artefact[picks] = fitted
        return artefact

    def _components(
        self,
        picks: np.ndarray,
        mean: np.ndarray,
        deviations: np.ndarray,
        counts: np.ndarray,
        whitener: np.ndarray,
        unwhitener: np.ndarray,
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """The mean template's components above the EEG left in it (at most ``components``).

        The BCG's spatial patterns are the main eigenvectors of the whitened epochs' spatial second
        moment: every beat's BCG adds to it while the EEG, white after the whitening, raises all
        directions alike, so the patterns come from all the epochs' energy and not from their mean
        only (where the EEG left in it tilts a weak pattern). Each pattern's time course is the
        whitened mean's projection on it; those whose norm exceeds the EEG left in the mean (the
        largest singular value of the same average taken with alternating signs, which cancels the
        BCG) are kept. Also returned: their whitened spatial patterns (channels, rank) and an
        orthonormal basis of their time courses (rank, samples).
        """
        signs = np.where(np.arange(deviations.shape[1]) % 2 == 0, 1.0, -1.0)
        noise = whitener @ (np.tensordot(deviations, signs, axes=([1], [0])) / counts[:, None])
        floor = NOISE_FACTOR * float(np.linalg.svd(noise, compute_uv=False)[0])
        moments = self._moments(self._history_moments, picks)
        if len(moments) >= self.min_template_beats:
            _, vectors = np.linalg.eigh(whitener @ np.sum(moments, axis=0) @ whitener)
            patterns = vectors[:, ::-1][:, : self.components]
            courses = patterns.T @ (whitener @ mean)
            values = np.linalg.norm(courses, axis=1)
            order = np.argsort(-values, kind="stable")
            rank = int(np.clip(np.sum(values > floor), 1, self.components))
            kept = order[:rank]
            _, _, temporal = np.linalg.svd(courses[kept], full_matrices=False)
            parts = [unwhitener @ np.outer(patterns[:, j], courses[j]) for j in kept]
            return parts, patterns[:, kept], temporal
        u, values, vt = np.linalg.svd(whitener @ mean, full_matrices=False)
        rank = int(np.clip(np.sum(values > floor), 1, self.components))
        parts = [unwhitener @ (values[j] * np.outer(u[:, j], vt[j])) for j in range(rank)]
        return parts, u[:, :rank], vt[:rank]

    def _moment(self, epoch: np.ndarray) -> np.ndarray:
        """An epoch's spatial second moment, detrended (NaN in a non-finite channel's row and column)."""
        detrended = self._detrend(epoch)
        return np.asarray(detrended @ detrended.T)

    def _moments(self, moments: deque[np.ndarray], picks: np.ndarray) -> list[np.ndarray]:
        """The stored moments restricted to ``picks``, those finite there."""
        if picks.size != self._picks.size:
            chosen = [m[np.ix_(picks, picks)] for m in moments]
        else:
            chosen = list(moments)
        return [m for m in chosen if np.isfinite(m).all()]

    def _detrend(self, x: np.ndarray) -> np.ndarray:
        """``x`` (..., samples) less its least-squares offset and linear trend over the epoch."""
        return x - (x @ self._trend.T) @ self._trend

    def _whitener(
        self, picks: np.ndarray, deviations: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Spatial whitening of the EEG under the BCG, and its inverse, for the channels ``picks``.

        The EEG's covariance across channels is estimated from the last beats' epochs after
        correction (before the first correction: from the epochs' ``deviations`` from their mean),
        shrunk towards a multiple of the identity.
        """
        moments = self._moments(self._residual_moments, picks)
        eye = np.eye(picks.size)
        if moments:
            covariance = np.sum(moments, axis=0) / (len(moments) * self._epoch)
        else:
            samples = self._detrend(deviations[:, valid.all(axis=0)].transpose(1, 0, 2))
            pooled = samples.transpose(1, 0, 2).reshape(picks.size, -1)
            if pooled.shape[1] == 0:
                return eye, eye
            covariance = pooled @ pooled.T / pooled.shape[1]
        return self._whitening(covariance)

    def _whitening(self, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whitening of ``covariance`` shrunk towards a multiple of the identity, and its inverse."""
        eye = np.eye(covariance.shape[0])
        level = float(np.trace(covariance)) / covariance.shape[0]
        if not level > 0:
            return eye, eye
        covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * level * eye
        values, vectors = np.linalg.eigh(covariance)
        values = np.maximum(values, 1e-12 * level)
        whitener = (vectors / np.sqrt(values)) @ vectors.T
        return whitener, (vectors * np.sqrt(values)) @ vectors.T

    def _spectrum(self, residual: np.ndarray) -> np.ndarray | None:
        """A residual epoch's power spectrum, detrended and whitened by the last fit, mean over channels.

        The Fourier transform (zero-padded to ``_fft_length``, at least twice the epoch) of the
        epoch's autocorrelation: the EEG's level along any direction follows from it (see ``_gains``).
        None where the epoch is not finite or no fit whitened every channel yet.
        """
        if self._last_whitener is None or not np.isfinite(residual).all():
            return None
        spectra = np.fft.rfft(self._last_whitener @ self._detrend(residual), n=self._fft_length, axis=1)
        return np.asarray(np.mean(spectra.real**2 + spectra.imag**2, axis=0) / self._epoch)

    def _gains(
        self,
        basis: np.ndarray,
        extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
        epoch: np.ndarray,
        picks: np.ndarray,
        whitener: np.ndarray,
        deviations: np.ndarray,
        valid: np.ndarray,
    ) -> np.ndarray | None:
        """The basis fitted to ``epoch``: least squares over its finite part, spatially whitened.

        Channels with no finite sample in the epoch are left out (the whitening recomputed without
        them), and so are the samples where another channel is not finite. Each channel's offset
        and trend over those samples are fitted beside the gains (taken out of both sides).

        The ``extra`` vectors (None: none) are fitted along their directions orthogonal to the
        basis, each gain shrunk towards 0 by ``change / (change + noise)``: ``noise`` the EEG's
        level along the direction (``EXTRA_MARGIN`` times the sum over channels of each channel's
        part weighted by the last whitened residual epochs' mean power spectrum), ``change`` how much
        the template beats' spread along it (their deviations from the mean) exceeds that.
        """
        finite = np.isfinite(epoch)
        rows = finite.any(axis=1)
        columns = finite[rows].all(axis=0)
        if not rows.any() or columns.sum() < basis.shape[0] + 3:
            return None
        if not rows.all():
            whitener, _ = self._whitener(picks[rows], deviations[rows], valid[rows])
        if columns.all():
            trend = self._trend.T
        else:
            ramp = np.linspace(-1.0, 1.0, self._epoch)[columns]
            trend, _ = np.linalg.qr(np.stack([np.ones(ramp.size), ramp], axis=1))  # (samples, 2)

        def prepared(x: np.ndarray) -> np.ndarray:
            """Detrended over the used samples, then whitened across the used channels."""
            part = x if rows.all() and columns.all() else x[..., rows, :][..., columns]
            part = part - (part @ trend) @ trend.T
            return np.asarray(np.matmul(whitener, part))

        left = prepared(basis).reshape(basis.shape[0], -1)
        right = prepared(epoch).reshape(-1)
        normal = left @ left.T
        scale = float(np.trace(normal)) / normal.shape[0] if np.trace(normal) > 0 else 1.0
        normal = normal + 1e-9 * scale * np.eye(normal.shape[0])
        artefact = np.tensordot(np.linalg.solve(normal, left @ right), basis, axes=1)
        if extra is None:
            return np.asarray(artefact)
        spectra = [spectrum for spectrum in self._residual_spectra if spectrum is not None]
        if len(spectra) < self.min_template_beats:
            return np.asarray(artefact)
        # The extra directions, orthonormal and orthogonal to the basis (whitened, detrended).
        pairs, spatial, temporal, unwhitener = extra
        if rows.all() and columns.all():  # whitened already: detrending the time courses is enough
            courses = temporal - (temporal @ trend) @ trend.T
            more = (spatial.T[:, None, :, None] * courses[None, :, None, :]).reshape(pairs.shape[0], -1)
        else:
            more = prepared(np.matmul(unwhitener, pairs)).reshape(pairs.shape[0], -1)
        overlap = np.linalg.solve(normal, left @ more.T)  # (basis vectors, extra vectors)
        beyond = more - overlap.T @ left
        values, vectors = np.linalg.eigh(beyond @ beyond.T)
        keep = values > 1e-6 * max(float(values[-1]), 0.0)
        if not keep.any():
            return np.asarray(artefact)
        mix = vectors[:, keep] / np.sqrt(values[keep])  # directions = mix.T @ beyond
        directions = (mix.T @ beyond).reshape(-1, int(rows.sum()), int(columns.sum()))  # (k, ch, samples)
        # The EEG along each direction: each channel's part against the residuals' mean spectrum
        # (the whitened EEG is white across channels; what the fits took out of the residuals is
        # coherent across them, a negligible share of each channel's spectrum).
        power = self._fft_weights * np.mean(spectra, axis=0)
        shapes = np.fft.rfft(directions, n=self._fft_length, axis=2)
        noise = EXTRA_MARGIN * np.sum(shapes.real**2 + shapes.imag**2, axis=1) @ power
        # The beats' spread along each direction: EEG and the BCG's own beat-to-beat change.
        dual = np.matmul(whitener, directions)
        dual = dual - (dual @ trend) @ trend.T
        chosen = deviations if rows.all() and columns.all() else deviations[rows][:, :, columns]
        spread = np.matmul(chosen, dual.transpose(1, 2, 0)).sum(axis=0)  # (beats, k)
        spread = np.sum(spread * spread, axis=0) / max(spread.shape[0] - 1, 1)
        change = np.maximum(spread - noise, 0.0)
        # The gain along each direction, shrunk by the share of the BCG's change in its spread.
        share = change / np.maximum(change + noise, 1e-300)
        weights = mix @ (share * (directions.reshape(directions.shape[0], -1) @ right))
        artefact += unwhitener @ np.tensordot(weights, pairs, axes=1)
        artefact -= np.tensordot(overlap @ weights, basis, axes=1)
        return np.asarray(artefact)

    # ------------------------------------------------------------------ output
    def _emit(self, stop: int) -> tuple[np.ndarray, np.ndarray, list[Span]]:
        """Output samples ``emitted`` .. ``stop - 1``, corrected by the beat covering each."""
        start = self._emitted
        if stop <= start:
            return np.empty(0), np.empty((0, self.n_channels), dtype=np.float32), []
        block = self._data[:, start - self._base : stop - self._base].copy()
        stamps = self._times[start - self._base : stop - self._base].copy()
        kinds = np.full(stop - start, "", dtype=object)
        beats = list(self._beats)
        # A sample belongs (for its flags) to the latest beat whose epoch has begun; the artefacts
        # fitted to every beat whose epoch covers it are subtracted (each beat's own BCG).
        covered = np.zeros(stop - start, dtype=bool)
        for k, beat in enumerate(beats):
            first = beat.peak - self._before
            end = beat.peak + self._after + 1
            if beat.artefact is not None and min(end, stop) > max(first, start):
                lo, hi = max(first, start), min(end, stop)
                block[self._picks, lo - start : hi - start] -= beat.artefact[:, lo - first : hi - first]
            last = beats[k + 1].peak - self._before if k + 1 < len(beats) else stop
            lo, hi = max(first, start), min(last, stop, end)
            if hi <= lo:
                continue
            covered[lo - start : hi - start] = True
            if beat.artefact is None:
                kinds[lo - start : hi - start] = UNCORRECTED
            elif beat.source == "eeg":
                kinds[lo - start : hi - start] = BEATS_FROM_EEG
        if self._picks.size:
            peaks = np.array([b.peak for b in beats], dtype=np.int64)
            for j in np.flatnonzero(~covered):
                s = start + int(j)
                k = int(np.searchsorted(peaks, s + self._before, side="right")) - 1
                if k < 0 or s + self._before - peaks[k] > max(MISSING_BEAT * beats[k].rr, self._after + 1):
                    kinds[j] = UNCORRECTED
        self._emitted = stop
        # A beat is dropped once its epoch has been output and the next one's has begun.
        while (
            len(self._beats) > 1
            and self._beats[0].peak + self._after + 1 <= stop
            and self._beats[1].peak - self._before <= stop
        ):
            self._beats.popleft()
        return stamps, block.T.astype(np.float32), self._spans(stamps, kinds)

    def _spans(self, stamps: np.ndarray, kinds: np.ndarray) -> list[Span]:
        spans: list[Span] = []
        period = 1.0 / self.sfreq
        flagged = np.flatnonzero(kinds != "")
        if flagged.size == 0:
            return spans
        breaks = np.flatnonzero((np.diff(flagged) > 1) | (kinds[flagged[1:]] != kinds[flagged[:-1]]))
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [flagged.size - 1]])
        for a, b in zip(starts, ends, strict=True):
            first, last = flagged[a], flagged[b]
            spans.append((float(stamps[first]), float(stamps[last]) + period, str(kinds[first])))
        return spans

    def _trim(self) -> None:
        keep_from = min(self._emitted, self._frontier - self._before - self._dom) - self._epoch
        drop = keep_from - self._base
        if drop > 0:
            self._data = self._data[:, drop:]
            self._times = self._times[drop:]
            self._base += drop

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, object]:
        """The correction's state, JSON-ready.

        Returns
        -------
        dict
            ``template_ready`` (enough beats to correct), ``beats_in_template``, ``heart_rate_bpm``
            (from the median RR of the last beats; None before two), ``ecg_quality`` (``"good"``,
            ``"poor"``, or ``"absent"``: no ECG channel, or nothing but non-finite or constant values
            in its last 2 s), ``beat_source`` (``"ecg"``, ``"eeg"`` or None: where the
            last beat came from), ``residual_power_ratio`` (power of the mean pulse-locked waveform
            left after correction over the last beats, relative to before; None before a
            correction), ``beats`` (beats so far) and ``latency_s``.
        """
        if self._detector is None:
            quality = "absent"
        else:
            quality = self._detector.quality()
        ratio: float | None = None
        if self._residuals:
            count = len(self._residuals)
            raw = np.nanmean(np.stack(list(self._history)[-count:]), axis=0)
            left = np.nanmean(np.stack(list(self._residuals)), axis=0)
            before = float(np.nansum(raw * raw))
            ratio = float(np.nansum(left * left)) / before if before > 0 else None
        return {
            "template_ready": len(self._history) >= self.min_template_beats,
            "beats_in_template": len(self._history),
            "heart_rate_bpm": 60.0 * self.sfreq / self._median_rr() if self._rr else None,
            "ecg_quality": quality,
            "beat_source": self._beats[-1].source if self._beats else None,
            "residual_power_ratio": ratio,
            "beats": self._beats_added,
            "latency_s": self.latency,
        }
