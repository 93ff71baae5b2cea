"""The 32-channel Brain Products BrainCap MR montage used in ds003768.

30 EEG electrodes of the 10-20 system (reference FCz), one EOG and one ECG
channel, in the amplifier's channel order.
"""

from __future__ import annotations

EEG_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2",
    "F7", "F8", "T7", "T8", "P7", "P8", "Fz", "Cz", "Pz", "Oz",
    "FC1", "FC2", "CP1", "CP2", "FC5", "FC6", "CP5", "CP6", "TP9", "TP10",
)  # fmt: skip
EOG_CHANNEL = "EOG"
ECG_CHANNEL = "ECG"
SAMPLE_INDEX_CHANNEL = "SampleIndex"
REFERENCE = "FCz"

CHANNELS: tuple[str, ...] = (*EEG_CHANNELS, EOG_CHANNEL, ECG_CHANNEL)
CHANNEL_TYPES: tuple[str, ...] = ("eeg",) * len(EEG_CHANNELS) + ("eog", "ecg")


_MISC_WORDS = (
    "RESP", "TEMP", "EVENT", "MARKER", "TRIG", "SPO2", "SAO2", "PLETH", "PULSE", "POSITION", "LIGHT",
    "FLOW", "NASAL", "THOR", "ABDO", "SNORE", "STATUS",
)  # fmt: skip
_EOG_NAMES = ("LOC", "ROC", "E1", "E2", "HEOG", "VEOG")


def channel_type_from_name(name: str) -> str:
    """Guess a channel type from a channel name (BrainVision, EDF/PSG or LSL labels).

    Parameters
    ----------
    name : str
        Channel name as written in the file, e.g. ``"Cz"``, ``"EEG Fpz-Cz"``,
        ``"EOG horizontal"``, ``"EMG submental"`` or ``"Resp oro-nasal"``.

    Returns
    -------
    ch_type : str
        ``"eeg"``, ``"eog"``, ``"ecg"``, ``"emg"`` or ``"misc"`` (respiration, temperature,
        event markers, oximetry, the sample-index test channel...); ``"eeg"`` when nothing
        else matches.
    """
    upper = name.upper().strip()
    if upper.startswith("EEG"):
        return "eeg"
    if "EOG" in upper or upper.split("-")[0].strip() in _EOG_NAMES:
        return "eog"
    if "ECG" in upper or "EKG" in upper:
        return "ecg"
    if "EMG" in upper or "CHIN" in upper:
        return "emg"
    if name == SAMPLE_INDEX_CHANNEL or any(word in upper for word in _MISC_WORDS):
        return "misc"
    return "eeg"
