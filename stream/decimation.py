"""Anti-alias decimation of EEG as it arrives: the same samples online and offline, in any chunking.

A stream sampled far above what the features need (5 kHz in an MR-compatible amplifier) is reduced
by an integer factor ``q`` before windowing. Each kept sample is the input sample whose number
(counted from the stream's first sample) is a multiple of ``q``, low-pass filtered by a linear-phase
FIR centred on it: the output keeps that sample's own timestamp, with no phase shift in the pass
band. The price is latency: an output needs the ``(taps - 1) / 2`` input samples after it, so the
decimated stream trails the input by that delay (79 ms at 5 kHz to 250 Hz, 72 ms at 1 kHz).
Non-voltage channels (misc, stim, a sample counter) are picked, not filtered.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import signal

PASSBAND_EDGE = 0.8  # the response is flat up to this fraction of the output's Nyquist frequency
STOPBAND_DB = 65.0  # designed attenuation from the output's Nyquist frequency up (60 dB with margin)


def decimation_factor(sfreq: float, feature_rate: float | None) -> int:
    """The integer factor an EEG stream is decimated by before features (1: kept as it is).

    ``q = floor(sfreq / feature_rate)``: 5000 Hz -> 20 (250 Hz), 1000 -> 4 (250), 512 -> 2 (256),
    500 -> 2 (250), 400 -> 1 (kept at 400 Hz), 256 -> 1. The output rate ``sfreq / q`` is never below
    ``feature_rate``; a stream below twice ``feature_rate`` is kept at its own rate.

    Parameters
    ----------
    sfreq : float
        The stream's nominal rate in Hz.
    feature_rate : float | None
        The lowest rate the features should see (``WindowConfig.feature_rate_hz``); None: never decimate.
    """
    if feature_rate is None:
        return 1
    return max(1, math.floor(sfreq / feature_rate + 1e-9))


def antialias_taps(factor: int) -> np.ndarray:
    """Kaiser-window FIR low-pass for decimation by ``factor`` (odd length, unit gain at 0 Hz).

    Flat (ripple ~ 0.06 %) to ``PASSBAND_EDGE`` of the output's Nyquist frequency, at least
    ``STOPBAND_DB`` down from the output's Nyquist frequency on.
    """
    output_nyquist = 1.0 / factor  # as a fraction of the input's Nyquist frequency
    width = (1 - PASSBAND_EDGE) * output_nyquist
    numtaps, beta = signal.kaiserord(STOPBAND_DB, width)
    numtaps |= 1  # odd: the centre tap sits on a sample, the delay is a whole number of samples
    cutoff = (1 + PASSBAND_EDGE) / 2 * output_nyquist
    return np.asarray(signal.firwin(numtaps, cutoff, window=("kaiser", beta)), dtype=np.float64)


class StreamingDecimator:
    """Low-pass and keep every ``factor``-th sample, chunk by chunk, with the state in between.

    Output ``k`` is input sample ``k * factor`` (numbered from the first sample fed since the
    start or the last :meth:`reset`), filtered by :func:`antialias_taps` centred on it, and carries
    that sample's timestamp. Each output is one dot product over the same input values, whatever
    the chunking, so any chunking gives bit-identical output. Before the first sample the input
    is taken to equal the first sample (no start-up transient for an offset); :meth:`flush` does
    the same after the last one. A dropout is not bridged: the samples on both sides are filtered
    as one sequence (the windows overlapping it are flagged anyway). A non-finite input value makes
    the outputs whose filter span holds it non-finite, so quality checks still see it.

    Parameters
    ----------
    sfreq : float
        Input rate in Hz.
    factor : int
        Decimation factor (>= 2).
    filtered : np.ndarray of bool, shape (n_channels,)
        Which channels are low-pass filtered (voltages); the others are picked.
    """

    def __init__(self, sfreq: float, factor: int, filtered: np.ndarray) -> None:
        if factor < 2:
            raise ValueError(f"a decimation factor must be >= 2, got {factor}")
        self.sfreq = float(sfreq)
        self.factor = int(factor)
        self.out_sfreq = self.sfreq / self.factor
        self.taps = antialias_taps(self.factor)
        self.delay = (self.taps.size - 1) // 2  # input samples an output waits for
        self._filtered = np.flatnonzero(np.asarray(filtered, dtype=bool))
        self._picked = np.flatnonzero(~np.asarray(filtered, dtype=bool))
        self.n_channels = int(np.asarray(filtered).size)
        self.reset()

    @property
    def latency(self) -> float:
        """Seconds the output trails the input (the filter's half length)."""
        return self.delay / self.sfreq

    def reset(self) -> None:
        """Forget the state: the next sample is sample 0 of a new sequence (a stream restart)."""
        self._tail = np.empty((self.n_channels, 0))  # input from sample `next - delay` on
        self._tail_times = np.empty(0)
        self._next = 0  # number of the next kept sample not yet output
        self._count = 0  # input samples fed

    def process(self, times: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed a chunk; return the outputs now complete.

        Parameters
        ----------
        times : np.ndarray, shape (n,)
            Timestamps of the chunk's samples.
        data : np.ndarray, shape (n, n_channels)
            The samples.

        Returns
        -------
        times, data : np.ndarray, shapes (m,) and (m, n_channels)
            Timestamps of the kept input samples and the decimated samples (float32).
        """
        if len(times) == 0:
            return np.empty(0), np.empty((0, self.n_channels), dtype=np.float32)
        values = np.asarray(data, dtype=np.float64).T
        stamps = np.asarray(times, dtype=np.float64)
        if self._count == 0:  # the first sample stands for the input before it
            self._tail = np.repeat(values[:, :1], self.delay, axis=1)
            self._tail_times = np.full(self.delay, np.nan)
        self._tail = np.concatenate([self._tail, values], axis=1)
        self._tail_times = np.concatenate([self._tail_times, stamps])
        self._count += stamps.size
        return self._emit(self._count - 1 - self.delay)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """At the end of a recording: the outputs still pending, the last sample standing for what follows."""
        if self._count == 0:
            return self.process(np.empty(0), np.empty((0, self.n_channels)))
        padding = np.repeat(self._tail[:, -1:], self.delay, axis=1)
        self._tail = np.concatenate([self._tail, padding], axis=1)
        self._tail_times = np.concatenate([self._tail_times, np.full(self.delay, np.nan)])
        emitted = self._emit(self._count - 1)
        self.reset()
        return emitted

    def _emit(self, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Outputs for the kept samples ``self._next`` .. ``last`` (the tail holds their spans)."""
        q, length = self.factor, self.taps.size
        count = (last - self._next) // q + 1 if last >= self._next else 0
        out = np.empty((count, self.n_channels), dtype=np.float32)
        if count == 0:
            return np.empty(0), out
        tail = self._tail  # column j is input sample next - delay + j; kept sample i at delay + i q
        centres = self.delay + q * np.arange(count)
        if self._filtered.size:
            rows = tail[self._filtered]
            row_stride, step = rows.strides
            spans = as_strided(
                rows, (rows.shape[0], count, length), (row_stride, q * step, step), writeable=False
            )
            # One dot product per output over its own span (einsum's inner loop runs over the span
            # alone), so an output's value does not depend on how many are computed together.
            out[:, self._filtered] = np.einsum("cnk,k->nc", spans, self.taps)
        if self._picked.size:
            out[:, self._picked] = tail[self._picked][:, centres].T
        stamps = self._tail_times[centres]
        self._next += count * q
        self._tail = tail[:, count * q :]
        self._tail_times = self._tail_times[count * q :]
        return stamps, out
