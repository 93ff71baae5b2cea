"""Channel conventions shared by the readers, the replay and the windower."""

from __future__ import annotations

VOLTAGE_TYPES: tuple[str, ...] = ("eeg", "eog", "ecg", "emg")
"""Channel types recorded in volts and streamed in microvolts."""
