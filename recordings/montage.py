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


def channel_type_from_name(name: str) -> str:
    """Guess an MNE channel type from a BrainVision channel name.

    Parameters
    ----------
    name : str
        Channel name as written in the ``.vhdr`` file.

    Returns
    -------
    ch_type : str
        ``"eog"``, ``"ecg"``, ``"misc"`` (the sample-index test channel) or ``"eeg"``.
    """
    upper = name.upper()
    if "EOG" in upper:
        return "eog"
    if "ECG" in upper or "EKG" in upper:
        return "ecg"
    if name == SAMPLE_INDEX_CHANNEL:
        return "misc"
    return "eeg"
