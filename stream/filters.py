"""Causal streaming filters applied to EEG as it arrives, identical online and offline."""

from __future__ import annotations

import numpy as np
from scipy import signal


class StreamingHighpass:
    """Causal Butterworth high-pass whose state carries over from chunk to chunk.

    Filtering a recording in any chunking gives the same samples as filtering it
    whole (the same operations in the same order), so live and offline windows
    agree. After a gap or a restart the state is re-initialised on the first new
    sample (its steady state for a constant input), so a dropout causes no step.

    Parameters
    ----------
    cutoff : float
        -3 dB frequency in Hz (0.5 Hz for sleep EEG).
    sfreq : float
        Sampling rate in Hz.
    n_channels : int
        Channels filtered (each independently).
    order : int
        Butterworth order (2 by default: a gentle slope that leaves 1 Hz nearly untouched).
    """

    def __init__(self, cutoff: float, sfreq: float, n_channels: int, order: int = 2) -> None:
        if not 0 < cutoff < sfreq / 2:
            raise ValueError(f"high-pass cutoff must be between 0 and {sfreq / 2:g} Hz, got {cutoff}")
        self.sos = signal.butter(order, cutoff, btype="highpass", fs=sfreq, output="sos")
        self._steady = signal.sosfilt_zi(self.sos)  # (n_sections, 2) for a unit step
        self.n_channels = n_channels
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the state (after a gap or a restart)."""
        self._state = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Filter a chunk of shape (n_samples, n_channels); returns float32."""
        if chunk.shape[0] == 0:
            return chunk
        values = np.nan_to_num(np.asarray(chunk, dtype=np.float64).T, nan=0.0, posinf=0.0, neginf=0.0)
        if self._state is None:
            self._state = self._steady[:, None, :] * values[:, 0][None, :, None]
        filtered, self._state = signal.sosfilt(self.sos, values, axis=1, zi=self._state)
        out = filtered.T.astype(np.float32)
        out[~np.isfinite(chunk)] = np.nan  # keep non-finite samples visible to quality checks
        return out
