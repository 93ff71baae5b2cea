"""YASA's pretrained sleep stager on the scoring's own 30-s epochs: the field's baseline.

YASA (``pip install 'sleepstream[yasa]'``) stages 30-s epochs counted from the first sample of
the data it is given, from one EEG derivation (plus an EOG if any), after resampling to 100 Hz
itself. So that its epoch ``i`` is the scoring's epoch ``i``, the data are cropped at the first
onset of each run of regularly spaced scored epochs, and each such run is staged on its own.

Derivation rule (:func:`yasa_derivation`), the one YASA was trained on first:

1. a central electrode against a contralateral mastoid: C4 against M1, A1 or TP9, else C3
   against M2, A2 or TP10 (ds003768's montage has no mastoid: TP9 and TP10 sit next to them);
2. else a bipolar EEG channel (a name such as ``EEG Fpz-Cz`` or ``C4-A1``), one with a central
   electrode first;
3. else a central EEG channel (C4, C3, Cz, in that order);
4. else the first EEG channel.

The EOG is the first channel of type ``eog`` (or whose name holds "EOG"), when there is one; with
rule 1 it is referenced to the other mastoid (e.g. EOG - TP10 beside C4 - TP9), as the EOG of YASA's
training nights was (E1 - M2).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.stages import EPOCH_SECONDS, SLEEP_STAGES, canonical_stage
from model.evaluation import YASA_COLUMN

if TYPE_CHECKING:
    from recordings.recording import Recording

__all__ = [
    "YASA_COLUMN",
    "Derivation",
    "YasaStaging",
    "YasaUnavailableError",
    "add_yasa_column",
    "import_yasa",
    "stage_recording",
    "yasa_derivation",
    "yasa_epoch_stages",
]

MIN_SECONDS = 300.0
"""YASA needs at least 5 minutes of data (its features average over 7.5 min)."""

MIN_SFREQ = 80.0
"""YASA refuses data sampled at 80 Hz or less."""

INSTALL_HINT = "YASA is not installed: install the optional extra with  pip install 'sleepstream[yasa]'"

_CENTRAL_MASTOID = (("C4", ("M1", "A1", "TP9")), ("C3", ("M2", "A2", "TP10")))
_CENTRAL = ("C4", "C3", "CZ")
_ONSET_TOLERANCE = 1e-3  # seconds: onsets this close to the regular grid are on it


class YasaUnavailableError(ImportError):
    """YASA (an optional extra) is not installed."""


@dataclass(frozen=True)
class Derivation:
    """The signals YASA stages: ``positive`` minus ``negative`` (None: the channel as it is), and an EOG.

    Attributes
    ----------
    positive : str
        The EEG channel.
    negative : str | None
        The reference subtracted from it, or None.
    eog : str | None
        The EOG channel, or None.
    eog_negative : str | None
        The reference subtracted from the EOG (the other mastoid), or None.
    """

    positive: str
    negative: str | None
    eog: str | None
    eog_negative: str | None = None

    @property
    def eeg(self) -> str:
        """The EEG derivation's label, e.g. ``C4-TP9`` or ``EEG Fpz-Cz``."""
        return self.positive if self.negative is None else f"{self.positive}-{self.negative}"

    @property
    def eog_label(self) -> str | None:
        """The EOG derivation's label, e.g. ``EOG-TP10``, or None."""
        if self.eog is None or self.eog_negative is None:
            return self.eog
        return f"{self.eog}-{self.eog_negative}"

    def __str__(self) -> str:
        return self.eeg if self.eog is None else f"{self.eeg} with EOG {self.eog_label}"


@dataclass
class YasaStaging:
    """YASA's stages of the scored epochs.

    Attributes
    ----------
    onsets : np.ndarray of float
        The epoch onsets that were asked for (seconds from the data's first sample).
    stages : list of str | None
        YASA's stage of each epoch in AASM notation (W, N1, N2, N3, R); None where not staged.
    proba : np.ndarray, shape (n_epochs, 5)
        YASA's probability of each of :data:`core.stages.SLEEP_STAGES`; NaN where not staged.
    derivation : Derivation | None
        The signals staged; None when the data have no EEG channel.
    notes : list of str
        Why epochs were not staged.
    """

    onsets: np.ndarray
    stages: list[str | None]
    proba: np.ndarray
    derivation: Derivation | None
    notes: list[str] = field(default_factory=list)

    @property
    def staged(self) -> int:
        """How many epochs YASA staged."""
        return sum(stage is not None for stage in self.stages)

    def by_onset(self, offset: float = 0.0) -> dict[float, str | None]:
        """Stage by epoch onset (rounded to the millisecond), the onsets shifted by ``offset``."""
        return {round(float(o) + offset, 3): s for o, s in zip(self.onsets, self.stages, strict=True)}


def import_yasa() -> Any:
    """The ``yasa`` module, or :class:`YasaUnavailableError` with the command that installs it."""
    try:
        import yasa
    except ImportError as err:
        raise YasaUnavailableError(f"{INSTALL_HINT} ({err})") from None
    return yasa


def _electrodes(name: str) -> list[str]:
    """The electrode labels of a channel name, upper case: ``EEG Fpz-Cz`` -> ``["FPZ", "CZ"]``."""
    core = re.sub(r"^(EEG|EOG|EMG)\s+", "", name.strip(), flags=re.IGNORECASE)
    return [part.strip().upper() for part in core.split("-") if part.strip()]


def _is_eog(name: str, ch_type: str) -> bool:
    return ch_type.lower() == "eog" or (ch_type.lower() in ("eeg", "misc") and "EOG" in name.upper())


def yasa_derivation(
    ch_names: list[str] | tuple[str, ...], ch_types: list[str] | tuple[str, ...]
) -> Derivation:
    """The EEG derivation (and EOG) to give YASA, by the rule of this module's docstring.

    Parameters
    ----------
    ch_names, ch_types : sequence of str
        The recording's channel names and MNE types.

    Returns
    -------
    derivation : Derivation

    Raises
    ------
    ValueError
        When no channel is an EEG channel.
    """
    if len(ch_names) != len(ch_types):
        raise ValueError(f"{len(ch_names)} channel names but {len(ch_types)} channel types")
    eog = next((n for n, t in zip(ch_names, ch_types, strict=True) if _is_eog(n, t)), None)
    eeg = [n for n, t in zip(ch_names, ch_types, strict=True) if t.lower() == "eeg" and not _is_eog(n, t)]
    if not eeg:
        raise ValueError(f"no EEG channel among {list(ch_names)}: YASA stages from an EEG channel")
    single = {_electrodes(n)[0]: n for n in reversed(eeg) if len(_electrodes(n)) == 1}
    for side, (central, mastoids) in enumerate(_CENTRAL_MASTOID):
        reference = next((single[m] for m in mastoids if m in single), None)
        if central in single and reference is not None:
            # An EOG electrode against the other mastoid, as YASA's training nights had it (E1-M2).
            other = _CENTRAL_MASTOID[1 - side][1]
            eog_reference = next((single[m] for m in other if m in single), None) if eog else None
            return Derivation(single[central], reference, eog, eog_reference)
    bipolar = [n for n in eeg if len(_electrodes(n)) == 2]
    central_bipolar = [n for n in bipolar if set(_electrodes(n)) & set(_CENTRAL)]
    if central_bipolar or bipolar:
        return Derivation((central_bipolar or bipolar)[0], None, eog)
    centrals = [single[c] for c in _CENTRAL if c in single]
    return Derivation((centrals or eeg)[0], None, eog)


def regular_runs(onsets: np.ndarray, epoch_seconds: float = EPOCH_SECONDS) -> list[np.ndarray]:
    """Indices of the runs of consecutive onsets spaced exactly one epoch apart (onsets increasing)."""
    if onsets.size == 0:
        return []
    breaks = np.flatnonzero(np.abs(np.diff(onsets) - epoch_seconds) > _ONSET_TOLERANCE) + 1
    return np.split(np.arange(onsets.size), breaks)


def yasa_epoch_stages(
    data_uv: np.ndarray,
    ch_names: list[str] | tuple[str, ...],
    ch_types: list[str] | tuple[str, ...],
    sfreq: float,
    epoch_onsets: np.ndarray | list[float],
    epoch_seconds: float = EPOCH_SECONDS,
    derivation: Derivation | None = None,
) -> YasaStaging:
    """YASA's stage and probabilities of each scored epoch.

    Each run of regularly spaced epochs that the data cover fully is staged on its own, the data
    cropped at its first onset so that YASA's epochs are the scoring's; a run shorter than
    :data:`MIN_SECONDS` is not staged (a note says why).

    Parameters
    ----------
    data_uv : np.ndarray, shape (n_channels, n_times)
        The recording in µV.
    ch_names, ch_types : sequence of str
        Its channel names and MNE types.
    sfreq : float
        Its sampling rate (Hz; above 80 Hz; YASA resamples to 100 Hz itself).
    epoch_onsets : array-like of float
        Onsets of the scored epochs, seconds from the first sample of ``data_uv``.
    epoch_seconds : float
        Length of a scored epoch: YASA's are 30 s; other lengths are not staged.
    derivation : Derivation | None
        The signals to stage; :func:`yasa_derivation` by default.

    Returns
    -------
    staging : YasaStaging

    Raises
    ------
    YasaUnavailableError
        When YASA is not installed.
    """
    onsets = np.asarray(epoch_onsets, dtype=float)
    n = onsets.size
    stages: list[str | None] = [None] * n
    proba = np.full((n, len(SLEEP_STAGES)), np.nan)
    notes: list[str] = []
    if not any(t.lower() == "eeg" for t in ch_types):
        return YasaStaging(onsets, stages, proba, None, ["no EEG channel: YASA not run"])
    derivation = derivation or yasa_derivation(ch_names, ch_types)
    staging = YasaStaging(onsets, stages, proba, derivation, notes)
    if not math.isclose(epoch_seconds, EPOCH_SECONDS):
        notes.append(f"the scoring's epochs are {epoch_seconds:g} s, YASA's {EPOCH_SECONDS:g} s: not staged")
        return staging
    if sfreq <= MIN_SFREQ:
        notes.append(f"EEG at {sfreq:g} Hz: YASA needs more than {MIN_SFREQ:g} Hz; not staged")
        return staging
    if n and np.any(np.diff(onsets) <= 0):
        raise ValueError("epoch onsets must be increasing")
    yasa = import_yasa()
    signals, names, types = _signals(np.asarray(data_uv, dtype=float), list(ch_names), derivation)
    duration = signals.shape[1] / sfreq
    covered = (onsets >= -_ONSET_TOLERANCE) & (onsets + epoch_seconds <= duration + _ONSET_TOLERANCE)
    if (~covered).any():
        notes.append(f"{int((~covered).sum())} epochs not fully covered by the data: not staged")
    for run in regular_runs(onsets):
        for part in _split(run, covered):
            if part.size * epoch_seconds < MIN_SECONDS:
                notes.append(
                    f"{part.size} consecutive epochs from {onsets[part[0]]:g} s: shorter than YASA's "
                    f"{MIN_SECONDS / 60:g} minutes, not staged"
                )
                continue
            first = round(float(onsets[part[0]]) * sfreq)
            last = first + round(part.size * epoch_seconds * sfreq)
            run_stages, run_proba = _stage(yasa, signals[:, first:last], names, types, sfreq, derivation)
            for k, index in enumerate(part[: len(run_stages)]):
                stages[index] = run_stages[k]
                proba[index] = run_proba[k]
    return staging


def _split(run: np.ndarray, covered: np.ndarray) -> list[np.ndarray]:
    """The stretches of ``run`` whose epochs are all covered."""
    keep = covered[run]
    breaks = np.flatnonzero(np.diff(keep.astype(int)) != 0) + 1
    return [piece for piece in np.split(run, breaks) if piece.size and keep[piece[0] - run[0]]]


def _signals(
    data_uv: np.ndarray, ch_names: list[str], derivation: Derivation
) -> tuple[np.ndarray, list[str], list[str]]:
    """The derivation's signals (µV), names and types."""
    eeg = data_uv[ch_names.index(derivation.positive)]
    if derivation.negative is not None:
        eeg = eeg - data_uv[ch_names.index(derivation.negative)]
    signals, names, types = [eeg], [derivation.eeg], ["eeg"]
    if derivation.eog is not None:
        eog = data_uv[ch_names.index(derivation.eog)]
        if derivation.eog_negative is not None:
            eog = eog - data_uv[ch_names.index(derivation.eog_negative)]
        signals.append(eog)
        names.append(str(derivation.eog_label))
        types.append("eog")
    return np.vstack(signals), names, types


def _stage(
    yasa: Any,
    signals_uv: np.ndarray,
    names: list[str],
    types: list[str],
    sfreq: float,
    derivation: Derivation,
) -> tuple[list[str], np.ndarray]:
    """YASA's stages (AASM notation) and probabilities (columns :data:`SLEEP_STAGES`) of one stretch."""
    import mne

    info = mne.create_info(names, sfreq, types, verbose=False)
    raw = mne.io.RawArray(np.nan_to_num(signals_uv) * 1e-6, info, verbose=False)
    with mne.utils.use_log_level("ERROR"), warnings.catch_warnings():
        # YASA's classifier was pickled by an older scikit-learn; the warning says so on every load.
        warnings.filterwarnings("ignore", message="Trying to unpickle estimator")
        stager = yasa.SleepStaging(raw, eeg_name=derivation.eeg, eog_name=derivation.eog_label)
        hypnogram = stager.predict()
    stages = [canonical_stage(str(value)) for value in np.asarray(hypnogram.hypno)]
    frame = hypnogram.proba.rename(columns=lambda c: canonical_stage(str(c)))
    proba = frame.reindex(columns=list(SLEEP_STAGES)).to_numpy(dtype=float)
    return stages, proba


def add_yasa_column(table: pd.DataFrame, staging: YasaStaging, offset: float = 0.0) -> pd.DataFrame:
    """A copy of a feature table with :data:`YASA_COLUMN`: YASA's stage of each window's epoch.

    Parameters
    ----------
    table : pandas.DataFrame
        One run's feature table, with ``epoch_start`` (seconds in the run's time base).
    staging : YasaStaging
        YASA's stages of that run's epochs.
    offset : float
        ``staging``'s onsets minus the table's ``epoch_start`` of the same epoch (the run's origin
        on the data's clock); the stage is looked up at ``epoch_start + offset``.

    Returns
    -------
    table : pandas.DataFrame
        None where the window has no epoch or YASA did not stage it.
    """
    if "epoch_start" not in table:
        raise ValueError("the feature table has no 'epoch_start' column: YASA's stages cannot be matched")
    stage_of = staging.by_onset()
    starts = pd.to_numeric(table["epoch_start"], errors="coerce").to_numpy(dtype=float)
    column = [stage_of.get(round(float(s) + offset, 3)) if np.isfinite(s) else None for s in starts]
    return table.assign(**{YASA_COLUMN: pd.Series(column, index=table.index, dtype=object)})


def stage_recording(recording: Recording) -> YasaStaging:
    """YASA's stages of a recording's scored epochs (reading only the channels YASA needs).

    Parameters
    ----------
    recording : Recording
        A recording with a hypnogram.

    Returns
    -------
    staging : YasaStaging
        Onsets in seconds from the recording's first sample (its ``stage_onsets``).

    Raises
    ------
    YasaUnavailableError
        When YASA is not installed.
    ValueError
        When the recording has no EEG channel.
    """
    import_yasa()
    derivation = yasa_derivation(recording.ch_names, recording.ch_types)
    names = [derivation.positive]
    names += [n for n in (derivation.negative, derivation.eog, derivation.eog_negative) if n is not None]
    picks = [recording.ch_names.index(name) for name in names]
    scale = np.asarray(recording.unit_scale, dtype=float)[picks]
    data_uv = recording.raw.get_data(picks=picks) * scale[:, None]
    types = [recording.ch_types[i] for i in picks]
    return yasa_epoch_stages(
        data_uv, names, types, recording.sfreq, recording.stage_onsets, derivation=derivation
    )
