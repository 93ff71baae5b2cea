"""Causal R-peak detection on one ECG channel as it arrives: the same beats in any chunking.

A Pan-Tompkins-like detector. The ECG is band-passed (5-20 Hz, causal Butterworth), squared (so
either polarity counts: ECG leads inside a scanner are often inverted) and integrated over 0.12 s.
A peak of that energy is a candidate once it is the largest within ``DOMINANCE`` s on both sides;
candidates are then classified in order against an adaptive threshold between the running signal
and noise peak levels, with a refractory period, a T-wave check and a search back for a beat
missed after 1.66 mean RR intervals. Each beat is placed at the largest ``|band-passed ECG|`` in
the integration span before its candidate (refined to a fraction of a sample and corrected for the
filter's group delay), so a beat is known a bounded time after it: :attr:`RPeakDetector.max_latency`.

Decisions depend only on sample numbers and values, never on how the samples were chunked, so any
chunking gives the same beats. Non-finite samples are held at the last finite value for the filters
and no beat is found near them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

BAND = (5.0, 20.0)  # Hz: the QRS complex's energy, above P and T waves and baseline wander
INTEGRATION = 0.12  # s: moving-window integration of the squared band-passed ECG
DOMINANCE = 0.2  # s: a candidate is the largest energy peak within this distance on both sides
REFINE_MARGIN = 0.04  # s searched before the integration span when refining a beat
REFRACTORY = 0.25  # s: no second beat sooner
T_WAVE = 0.36  # s: a peak this soon after a beat and under half its height is a T wave
LEARNING = 2.0  # s of ECG that set the first thresholds
RELEARN = 3.0  # s without a beat: thresholds are set again from the recent peaks
SEARCHBACK = 1.66  # mean RR intervals without a beat before searching back
NONFINITE_GUARD = 0.3  # s: no beat this close to a non-finite sample
QUALITY_WINDOW = 2.0  # s of ECG the quality looks at
PLAUSIBLE_BPM = (30.0, 150.0)
IRREGULARITY = 0.2  # median successive RR change over the median RR beyond which beats are noise
RR_HISTORY = 8  # RR intervals kept for the rate and regularity


@dataclass(frozen=True)
class RPeak:
    """One detected beat.

    Attributes
    ----------
    time : float
        Time of the R peak (s, on the clock of the samples fed).
    sample : float
        Its position in samples counted from the first sample fed (fractional).
    confirmed_at : int
        Number of the last sample the decision needed: the beat is known once that sample is fed.
    plausible : bool
        Whether the ECG looked like a heart at that moment: rate within 30-150 bpm, regular enough,
        no non-finite samples in the last 2 s.
    """

    time: float
    sample: float
    confirmed_at: int
    plausible: bool


class RPeakDetector:
    """Causal, chunk-wise R-peak detection on one ECG channel.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz (at least 50 Hz; the band pass reaches 20 Hz).
    """

    def __init__(self, sfreq: float) -> None:
        if not np.isfinite(sfreq) or sfreq < 50.0:
            raise ValueError(f"R-peak detection needs an ECG rate of at least 50 Hz, got {sfreq}")
        self.sfreq = float(sfreq)
        self._sos = signal.butter(2, BAND, btype="bandpass", fs=self.sfreq, output="sos")
        self._width = max(2, round(INTEGRATION * self.sfreq))
        self._dom = max(1, round(DOMINANCE * self.sfreq))
        self._margin = round(REFINE_MARGIN * self.sfreq)
        self._bp_delay = self._qrs_delay()
        self._keep = round(max(QUALITY_WINDOW, RELEARN) * self.sfreq) + 2 * self._dom + self._width + 8
        self.reset()

    def _qrs_delay(self) -> float:
        """Samples by which the largest ``|band-passed|`` value trails the peak of a typical R wave.

        The band pass's delay for a QRS complex, measured on a Gaussian R wave (10 ms wide)
        filtered from rest; removed from every beat's position.
        """
        n = round(0.5 * self.sfreq)
        centre = round(0.1 * self.sfreq)
        wave = np.exp(-0.5 * ((np.arange(n) - centre) / (0.01 * self.sfreq)) ** 2)
        response = np.abs(signal.sosfilt(self._sos, wave))
        k = int(np.argmax(response))
        left, mid, right = response[k - 1], response[k], response[k + 1]
        denom = left - 2 * mid + right
        frac = 0.5 * (left - right) / denom if denom < 0 else 0.0
        return k + frac - centre

    @property
    def max_latency(self) -> int:
        """Samples after a beat by which it is confirmed (search-back beats and the first 2 s excepted)."""
        return self._dom + self._width + self._margin + int(np.ceil(self._bp_delay)) + 1

    def reset(self) -> None:
        """Forget everything: the next sample is sample 0 of a new sequence."""
        self._count = 0
        self._base = 0  # sample number of the buffers' first element
        self._bp = np.empty(0)
        self._raw = np.empty(0)
        self._energy = np.empty(0)
        self._bad = np.empty(0, dtype=bool)
        self._times = np.empty(0)
        self._sos_state: np.ndarray | None = None
        self._mwi_state = np.zeros(self._width - 1)
        self._last_finite = 0.0
        self._scan = 0  # first sample not yet examined as a candidate
        self._last_bad = -(10**12)  # number of the last non-finite sample
        self._learned = False
        self._pending: list[tuple[int, float]] = []  # candidates waiting for the learning period
        self._spk = 0.0
        self._npk = 0.0
        self._last_beat: int | None = None  # candidate index of the last beat
        self._last_height = 0.0
        self._reference = 0  # last beat or relearning, for the relearning clock
        self._rr: deque[int] = deque(maxlen=RR_HISTORY)
        self._heights: deque[float] = deque(maxlen=RR_HISTORY + 1)
        self._noise_since_beat: list[tuple[int, float]] = []
        self._recent: deque[tuple[int, float]] = deque()
        self._last_peak_sample: float | None = None
        self._last_plausible = False

    # ------------------------------------------------------------------ feeding
    def process(self, times: np.ndarray, ecg: np.ndarray) -> list[RPeak]:
        """Feed a chunk of the ECG; return the beats confirmed by it, in time order.

        Parameters
        ----------
        times : np.ndarray, shape (n,)
            Timestamps of the samples.
        ecg : np.ndarray, shape (n,)
            The ECG samples (any unit, either polarity).
        """
        x = np.asarray(ecg, dtype=np.float64).reshape(-1)
        stamps = np.asarray(times, dtype=np.float64).reshape(-1)
        if x.size != stamps.size:
            raise ValueError(f"{stamps.size} timestamps for {x.size} ECG samples")
        if x.size == 0:
            return []
        bad = ~np.isfinite(x)
        if bad.any():
            # Hold the last finite value so that the filters see no jump into a non-finite stretch.
            held = np.concatenate([[self._last_finite], x])
            index = np.where(np.isfinite(held), np.arange(held.size), 0)
            np.maximum.accumulate(index, out=index)
            x = held[index][1:]
            self._last_bad = self._count + int(np.flatnonzero(bad)[-1])
        self._last_finite = float(x[-1])
        if self._sos_state is None:  # steady state for the first value: no start-up transient
            self._sos_state = signal.sosfilt_zi(self._sos) * x[0]
        bp, self._sos_state = signal.sosfilt(self._sos, x, zi=self._sos_state)
        taps = np.full(self._width, 1.0 / self._width)
        energy, self._mwi_state = signal.lfilter(taps, 1.0, bp * bp, zi=self._mwi_state)
        self._bp = np.concatenate([self._bp, bp])
        self._raw = np.concatenate([self._raw, x])
        self._energy = np.concatenate([self._energy, energy])
        self._bad = np.concatenate([self._bad, bad])
        self._times = np.concatenate([self._times, stamps])
        self._count += x.size
        beats = self._examine()
        self._trim()
        return beats

    def flush(self) -> list[RPeak]:
        """At the end of a recording: decide its last candidates, then forget the state.

        The candidates of the last ``DOMINANCE`` s are judged with the ECG after the end counting as
        lower than any (as before its start); they are confirmed at the last sample.
        """
        beats = self._examine(final=True) if self._count else []
        self.reset()
        return beats

    # ------------------------------------------------------------------ quality
    @property
    def heart_rate_bpm(self) -> float | None:
        """Heart rate from the median of the last RR intervals (None before two beats)."""
        if not self._rr:
            return None
        return 60.0 * self.sfreq / float(np.median(self._rr))

    def quality(self) -> str:
        """``"good"`` when beats are recent, plausible and the ECG finite; ``"absent"`` or ``"poor"``.

        Absent: the last 2 s hold nothing but non-finite or constant values (a lead off, a dead
        channel).

        Poor: non-finite samples in the last 2 s, no beat for ``max(2 s, 1.5 RR)`` beyond the
        detection latency (a flat or disconnected lead), or the last beats implausible (rate out of
        30-150 bpm, or irregular like noise).
        """
        now = self._count - 1
        if self._count == 0:
            return "absent"
        recent = slice(max(0, self._count - round(QUALITY_WINDOW * self.sfreq) - self._base), None)
        finite = self._raw[recent][~self._bad[recent]]
        if finite.size == 0 or np.ptp(finite) <= 1e-12 * max(1.0, float(np.abs(finite).max())):
            return "absent"
        if now - self._last_bad < QUALITY_WINDOW * self.sfreq:
            return "poor"
        if self._last_peak_sample is None or not self._last_plausible:
            return "poor"
        rr = float(np.median(self._rr)) if self._rr else self.sfreq
        allowed = max(QUALITY_WINDOW * self.sfreq, 1.5 * rr) + self.max_latency
        return "good" if now - self._last_peak_sample <= allowed else "poor"

    def _plausible(self, at: int, interval: int | None, height: float, searched_back: bool) -> bool:
        """Whether a beat just found (``interval`` samples after the previous one) is believable.

        Not when non-finite samples came in the last 2 s, nor as the first beat after a pause
        longer than 60/30 bpm (a lead coming back makes a step the filter turns into a false
        beat), nor when its interval or height is far from the last beats' (0.6-1.4 times the median
        interval, 0.25-4 times the median height, at least half of it for a beat found by
        searching back) or those beats are too fast, too slow or irregular
        (noise). The first beats, too few to judge by, are taken as they come.
        """
        if self._bad_near(at - round(QUALITY_WINDOW * self.sfreq), at):
            return False
        if interval is None:
            return True
        if interval > self.sfreq * 60.0 / PLAUSIBLE_BPM[0]:
            return False
        if len(self._rr) < 3:
            return True  # too few beats to judge
        rr = np.asarray(self._rr, dtype=np.float64)
        median = float(np.median(rr))
        bpm = 60.0 * self.sfreq / median
        if not PLAUSIBLE_BPM[0] <= bpm <= PLAUSIBLE_BPM[1]:
            return False
        if not 0.6 * median <= interval <= 1.4 * median:
            return False
        typical = float(np.median(self._heights))
        if not (0.5 if searched_back else 0.25) * typical <= height <= 4.0 * typical:
            return False
        return float(np.median(np.abs(np.diff(rr)))) <= IRREGULARITY * median

    # ------------------------------------------------------------------ decisions
    def _examine(self, final: bool = False) -> list[RPeak]:
        """Find the dominant energy peaks now decidable and classify them in order."""
        # A candidate needs DOMINANCE s after it (at the end of the recording, what there is).
        last = self._count - 1 if final else self._count - 1 - self._dom
        beats: list[RPeak] = []
        if last >= self._scan:
            lo = self._scan - self._base
            hi = last - self._base + 1
            # Before sample 0 the energy counts as -inf; later the buffer holds DOMINANCE s before `lo`.
            pad = self._dom if self._base == 0 else 0
            energy = np.concatenate([np.full(pad, -np.inf), self._energy]) if pad else self._energy
            if final:
                energy = np.concatenate([energy, np.full(self._dom, -np.inf)])
            windows = sliding_window_view(energy, 2 * self._dom + 1)[
                lo + pad - self._dom : hi + pad - self._dom
            ]
            centre = windows[:, self._dom]
            before = windows[:, : self._dom].max(axis=1)
            after = windows[:, self._dom + 1 :].max(axis=1)
            dominant = (centre > before) & (centre >= after) & (centre > 0)
            for offset in np.flatnonzero(dominant):
                i = self._scan + int(offset)
                self._pending.append((i, float(centre[offset])))
            self._scan = last + 1
        learn_end = round(LEARNING * self.sfreq)
        if not self._learned:
            if self._count < learn_end:
                return beats  # (a recording shorter than the learning period has no beats)
            heights = [h for i, h in self._pending if i + self._dom < learn_end]
            self._spk = 0.5 * max(heights) if heights else 0.0
            self._npk = 0.5 * float(np.mean(self._energy[: learn_end - self._base]))
            self._learned = True
            self._reference = learn_end - 1
        for i, h in self._pending:
            confirmed = max(min(i + self._dom, self._count - 1), learn_end - 1)
            beats.extend(self._classify(i, h, confirmed))
        self._pending = []
        return beats

    def _classify(self, i: int, h: float, confirmed: int) -> list[RPeak]:
        beats: list[RPeak] = []
        guard = NONFINITE_GUARD * self.sfreq
        if self._bad_near(i - self._width - round(guard), i + self._dom):
            return beats
        self._recent.append((i, h))
        while self._recent and self._recent[0][0] < i - RELEARN * self.sfreq:
            self._recent.popleft()
        threshold = self._npk + 0.25 * (self._spk - self._npk)
        if self._last_beat is not None and self._rr:
            mean_rr = float(np.mean(self._rr))
            if i - self._last_beat > SEARCHBACK * mean_rr and self._noise_since_beat:
                j, hj = max(self._noise_since_beat, key=lambda peak: peak[1])
                if hj > 0.5 * threshold:
                    self._spk = 0.25 * hj + 0.75 * self._spk
                    beats.append(self._beat(j, hj, confirmed, searched_back=True))
                    threshold = self._npk + 0.25 * (self._spk - self._npk)
        if i - self._reference > RELEARN * self.sfreq:
            heights = np.array([peak[1] for peak in self._recent])
            self._spk = 0.5 * float(heights.max())
            self._npk = 0.5 * float(np.median(heights))
            self._reference = i
            threshold = self._npk + 0.25 * (self._spk - self._npk)
        is_beat = h > threshold and (
            self._last_beat is None or i - self._last_beat >= REFRACTORY * self.sfreq
        )
        if is_beat and self._last_beat is not None and i - self._last_beat < T_WAVE * self.sfreq:
            is_beat = h >= 0.5 * self._last_height
        if is_beat:
            self._spk = 0.125 * h + 0.875 * self._spk
            beats.append(self._beat(i, h, confirmed))
        else:
            self._npk = 0.125 * h + 0.875 * self._npk
            self._noise_since_beat.append((i, h))
        return beats

    def _beat(self, i: int, h: float, confirmed: int, searched_back: bool = False) -> RPeak:
        interval = None if self._last_beat is None else i - self._last_beat
        plausible = self._plausible(confirmed, interval, h, searched_back)
        lo = max(i - self._width - self._margin, self._base)
        span_raw = self._raw[lo - self._base : i - self._base + 1]
        if np.ptp(span_raw) <= 1e-12 * max(1.0, float(np.abs(span_raw).max())):
            plausible = False  # a flat line: the filter's fading ringing, not a heart
        self._heights.append(h)
        if interval is not None:
            self._rr.append(interval)
        self._last_beat = i
        self._last_height = h
        self._reference = i
        self._noise_since_beat = []
        span = np.abs(self._bp[lo - self._base : i - self._base + 1])
        k = int(np.argmax(span))
        frac = 0.0
        if 0 < k < span.size - 1:  # parabola through the maximum and its neighbours
            left, mid, right = span[k - 1], span[k], span[k + 1]
            denom = left - 2 * mid + right
            if denom < 0:
                frac = 0.5 * (left - right) / denom
        index = lo + k
        sample = index + frac - self._bp_delay
        time = float(self._times[index - self._base]) + (frac - self._bp_delay) / self.sfreq
        self._last_peak_sample = sample
        self._last_plausible = plausible
        return RPeak(time=time, sample=sample, confirmed_at=confirmed, plausible=plausible)

    def _bad_near(self, lo: int, hi: int) -> bool:
        lo = max(lo, self._base)
        if hi < lo:
            return False
        return bool(self._bad[lo - self._base : hi - self._base + 1].any())

    def _trim(self) -> None:
        # Keep what later decisions may read: the learning period, then RELEARN + margins.
        keep_from = self._count - self._keep
        if not self._learned:
            keep_from = 0
        drop = keep_from - self._base
        if drop > 0:
            self._bp = self._bp[drop:]
            self._raw = self._raw[drop:]
            self._energy = self._energy[drop:]
            self._bad = self._bad[drop:]
            self._times = self._times[drop:]
            self._base += drop
