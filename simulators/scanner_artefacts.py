"""EEG recorded inside an MR scanner: gradient and ballistocardiogram artefacts over a clean signal.

Every later correction step is validated against what this module adds, so the physics is explicit:

- **Gradient artefact.** Each slice of an EPI volume plays the same gradient program on the three
  axes (a fat-saturation crusher, the slice-select trapezoid and its rephaser on z; read and phase
  prephasers; a readout train of alternating trapezoids on x with phase-encode blips on y; a spoiler
  on z). A lead loop picks up a voltage proportional to dG/dt, which is piecewise constant for
  trapezoids. The amplifier's hardware low-pass (an analogue Butterworth filter) is applied
  *analytically*: the filtered signal is the sum of the filter's step responses at every slope
  change, evaluated exactly at the samples' times. Volume onsets may therefore fall anywhere between
  samples (a scanner and an amplifier with separate clocks), and the artefact is the one a real
  amplifier would have sampled. Each channel couples to the three axes with its own weights (its own
  amplitude and shape); the weights take a small random-walk step every volume (head movement).
- **ECG.** PQRST complexes (Gaussian waves, T wave later with longer R-R) at beat times from a heart
  rate with respiratory sinus arrhythmia, a slow drift and beat-to-beat jitter, optionally following
  a per-sample heart-rate schedule; respiratory baseline wander and amplitude modulation.
- **Ballistocardiogram (BCG).** Each beat moves the head and the electrode leads in the field. The
  per-channel waveform mixes a few smooth temporal components (several lobes over
  ``bcg_duration`` seconds, starting ``bcg_delay`` after the R peak) with spatially smooth weights
  over the head, so neighbouring electrodes resemble each other. Beat to beat the amplitude varies
  (~10 %), the components' mix (shape) and timing (a few ms) change a little, and respiration
  modulates the amplitude. EEG and EOG channels carry it, the ECG does not.

The clean signal stays separate: ``data == clean + gradient + bcg`` (float32, in that order).
Reference: Allen et al. (2000) NeuroImage 12:230-239 and Niazy et al. (2005) NeuroImage 28:720-737
describe both artefacts; the EPI timing follows a standard single-shot gradient-echo EPI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage, signal

# Gradient program of one slice, times in ms from the slice's start, amplitudes in mT/m.
_RAMP_MS = 0.1  # readout lobe ramp
_READOUT_START_MS = 6.8
_AFTER_READOUT_MS = 3.7  # spoiler and its ramps after the last readout lobe
_READOUT_MT_M = 22.0
_BLIP_MT_M = 3.0
_SETTLE_S = 0.05  # the hardware filter's step response has settled to < 1e-8 after this
_FINE_HZ = 200_000.0  # grid on which the continuous artefact's peak is measured

_ECG_LEAD_COUPLING = 1.5  # the ECG lead runs down the back: a larger loop than a scalp electrode's


@dataclass(frozen=True)
class ScannerArtefactSettings:
    """How the scanner contaminates the EEG (validated on creation).

    Attributes
    ----------
    slices_per_volume : int
        Slices acquired per volume (ds003768: 35); each slice plays the same gradient program.
    gradient_uv : float
        Typical peak amplitude of the gradient artefact on a channel (µV): the median over EEG
        channels of each channel's peak.
    hardware_lowpass_hz : float
        Cut-off of the amplifier's analogue low-pass (BrainAmp MR at 5 kHz: 250 Hz); must be below
        half the sampling rate.
    hardware_lowpass_order : int
        Order of that Butterworth filter.
    movement : float
        Random-walk step per volume of each channel's coupling to each gradient axis, as a fraction of
        the channels' RMS coupling (head movement).
    clock_mismatch_ppm : float
        Amplifier clock against scanner clock, parts per million (0: a sync box locks them; about
        20 without one). The volumes (and the slices within them) are stretched by
        ``1 + clock_mismatch_ppm * 1e-6`` on the amplifier's clock.
    volume_gap : float
        Quiet time at the end of each volume (s); the slices share ``tr - volume_gap`` evenly.
    echo_spacing : float
        Duration of one readout lobe (s); about 0.5 ms.
    readout_lines : int
        Readout lobes per slice (k-space lines); with ``echo_spacing`` the readout lasts 32 ms.
    heart_rate_bpm : float or np.ndarray
        Mean heart rate (beats per minute), or a schedule: one value per sample of the signal
        (e.g. a step from 60 to 90), around which the rate varies physiologically.
    rsa_depth : float
        Respiratory sinus arrhythmia: relative change of the heart rate over a breath.
    rr_jitter : float
        Standard deviation of the random beat-to-beat jitter of the R peaks (s).
    respiration_hz : float
        Breathing rate (Hz); it modulates the heart rate, the ECG and the BCG.
    ecg_uv : float
        R-wave amplitude of the ECG (µV).
    ecg_dropouts : tuple of (float, float)
        Intervals (s from the first sample) where the ECG electrode loses contact: the ECG channel
        shows drift and noise only, while the heart (and the BCG) go on.
    bcg_uv : tuple of float
        Range ``(low, high)`` of the per-channel BCG peak amplitudes (µV).
    bcg_delay : float
        From the R peak to the onset of the BCG (s).
    bcg_duration : float
        Length of one beat's BCG waveform (s); it ends ``bcg_delay + bcg_duration`` after the R peak.
    bcg_variation : float
        Beat-to-beat relative variation of the BCG amplitude.
    bcg_jitter : float
        Beat-to-beat timing jitter of the BCG relative to the R peak (s).
    missing_triggers : tuple of int
        Volumes (0-based) whose R128 marker the recorder fails to log; their artefact is still there.
    gradients : bool
        Add the gradient artefact.
    bcg : bool
        Add the ballistocardiogram.
    """

    slices_per_volume: int = 35
    gradient_uv: float = 3000.0
    hardware_lowpass_hz: float = 250.0
    hardware_lowpass_order: int = 5
    movement: float = 0.002
    clock_mismatch_ppm: float = 0.0
    volume_gap: float = 0.0
    echo_spacing: float = 0.0005
    readout_lines: int = 64
    heart_rate_bpm: float | np.ndarray = 62.0
    rsa_depth: float = 0.04
    rr_jitter: float = 0.01
    respiration_hz: float = 0.25
    ecg_uv: float = 1000.0
    ecg_dropouts: tuple[tuple[float, float], ...] = field(default=())
    bcg_uv: tuple[float, float] = (50.0, 200.0)
    bcg_delay: float = 0.2
    bcg_duration: float = 0.6
    bcg_variation: float = 0.1
    bcg_jitter: float = 0.003
    missing_triggers: tuple[int, ...] = field(default=())
    gradients: bool = True
    bcg: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"ScannerArtefactSettings.{name} {rule} (got {getattr(self, name)!r})")

        need(
            _is_int(self.slices_per_volume) and self.slices_per_volume >= 1,
            "slices_per_volume",
            "must be a whole number >= 1",
        )
        need(
            _is_int(self.readout_lines) and self.readout_lines >= 2,
            "readout_lines",
            "must be a whole number >= 2",
        )
        need(
            _is_int(self.hardware_lowpass_order) and 1 <= self.hardware_lowpass_order <= 8,
            "hardware_lowpass_order",
            "must be a whole number from 1 to 8",
        )
        for name in ("gradient_uv", "hardware_lowpass_hz", "respiration_hz", "ecg_uv", "bcg_duration"):
            need(_finite(getattr(self, name)) and getattr(self, name) > 0, name, "must be a positive number")
        for name in (
            "movement",
            "volume_gap",
            "rsa_depth",
            "rr_jitter",
            "bcg_delay",
            "bcg_variation",
            "bcg_jitter",
        ):
            need(_finite(getattr(self, name)) and getattr(self, name) >= 0, name, "must be a number >= 0")
        need(
            0.2e-3 < self.echo_spacing <= 5e-3 if _finite(self.echo_spacing) else False,
            "echo_spacing",
            "must be between 0.2 ms and 5 ms (in seconds)",
        )
        need(
            _finite(self.clock_mismatch_ppm) and abs(self.clock_mismatch_ppm) < 1000,
            "clock_mismatch_ppm",
            "must be a number between -1000 and 1000",
        )
        need(self.rsa_depth < 0.3, "rsa_depth", "must be below 0.3")
        need(self.bcg_variation < 0.5, "bcg_variation", "must be below 0.5")
        need(
            self.rr_jitter <= 0.05 and self.bcg_jitter <= 0.05,
            "rr_jitter" if self.rr_jitter > 0.05 else "bcg_jitter",
            "must be at most 0.05 s",
        )
        rate = self.heart_rate_bpm
        if isinstance(rate, np.ndarray):
            values = np.array(rate, dtype=np.float64)  # a private, read-only copy
            need(values.ndim == 1 and values.size > 0, "heart_rate_bpm", "must be a number or a 1-D array")
            values.setflags(write=False)
            object.__setattr__(self, "heart_rate_bpm", values)
        else:
            need(_finite(rate), "heart_rate_bpm", "must be a number or a 1-D array")
            values = np.array([float(rate)])
        need(
            bool(np.all(np.isfinite(values)) and values.min() >= 25 and values.max() <= 220),
            "heart_rate_bpm",
            "must lie between 25 and 220 beats per minute",
        )
        low_high = self.bcg_uv
        need(
            isinstance(low_high, tuple)
            and len(low_high) == 2
            and all(_finite(v) for v in low_high)
            and 0 < low_high[0] <= low_high[1],
            "bcg_uv",
            "must be a pair (low, high) with 0 < low <= high",
        )
        need(
            isinstance(self.ecg_dropouts, tuple)
            and all(
                isinstance(d, tuple) and len(d) == 2 and all(_finite(v) for v in d) and 0 <= d[0] < d[1]
                for d in self.ecg_dropouts
            ),
            "ecg_dropouts",
            "must be a tuple of (start, stop) seconds, start < stop",
        )
        need(
            isinstance(self.missing_triggers, tuple)
            and all(_is_int(v) and v >= 0 for v in self.missing_triggers),
            "missing_triggers",
            "must be a tuple of volume indices >= 0",
        )
        need(isinstance(self.gradients, bool), "gradients", "must be True or False")
        need(isinstance(self.bcg, bool), "bcg", "must be True or False")

    def _key(self) -> tuple[Any, ...]:
        rate = self.heart_rate_bpm
        rate_key = rate.tobytes() if isinstance(rate, np.ndarray) else rate
        return tuple(rate_key if f.name == "heart_rate_bpm" else getattr(self, f.name) for f in fields(self))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScannerArtefactSettings):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class ScannerContamination:
    """An in-scanner recording and its parts (all float32, µV, shape ``(n_channels, n_times)``).

    Attributes
    ----------
    data : np.ndarray
        What the amplifier records: ``clean + gradient + bcg``.
    clean : np.ndarray
        What a correction should recover: the input signal, with the ECG channel(s) replaced by the
        simulated ECG (whose beats drive the BCG).
    gradient : np.ndarray
        The gradient artefact alone.
    bcg : np.ndarray
        The ballistocardiogram alone (zero on the ECG channels).
    trigger_times : np.ndarray
        R128 marker times as a recorder logs them: volume onsets rounded to the sample grid, in
        seconds from the first sample, without the ``missing_triggers``.
    volume_onsets : np.ndarray
        True onset of every volume on the amplifier's clock (s, continuous).
    r_peaks : np.ndarray
        True R-peak times (s, continuous).
    """

    data: np.ndarray
    clean: np.ndarray
    gradient: np.ndarray
    bcg: np.ndarray
    trigger_times: np.ndarray
    volume_onsets: np.ndarray
    r_peaks: np.ndarray


def contaminate(
    clean: np.ndarray,
    ch_types: Sequence[str],
    sfreq: float,
    first_volume: float,
    n_volumes: int,
    tr: float,
    rng: np.random.Generator,
    settings: ScannerArtefactSettings | None = None,
    *,
    ch_names: Sequence[str] | None = None,
) -> ScannerContamination:
    """Add the scanner's gradient artefact and the ballistocardiogram to a clean recording.

    Parameters
    ----------
    clean : np.ndarray, shape (n_channels, n_times)
        Clean signals in µV.
    ch_types : sequence of str
        Type of every channel: ``"eeg"``, ``"eog"``, ``"ecg"`` (others are left untouched).
    sfreq : float
        Sampling rate of the amplifier (Hz); ds003768 records at 5000 Hz.
    first_volume : float
        Onset of the first volume (s from the first sample).
    n_volumes : int
        Volumes acquired; volumes running past the end are cut.
    tr : float
        Repetition time on the scanner's clock (s).
    rng : np.random.Generator
        Source of all the artefacts' randomness.
    settings : ScannerArtefactSettings | None
        The artefacts' settings; the defaults when None.
    ch_names : sequence of str | None
        Channel names: 10-20 names place the electrodes on the head, so that BCG and gradient
        coupling vary smoothly over the scalp. Without names each channel gets a random place.

    Returns
    -------
    contamination : ScannerContamination
    """
    settings = settings or ScannerArtefactSettings()
    clean = np.asarray(clean)
    if clean.ndim != 2 or clean.shape[1] == 0:
        raise ValueError(f"clean must be (n_channels, n_times) with samples, got shape {clean.shape}")
    n_channels, n_times = clean.shape
    types = [str(t).lower() for t in ch_types]
    if len(types) != n_channels:
        raise ValueError(f"ch_types has {len(types)} entries for {n_channels} channels")
    if ch_names is not None and len(ch_names) != n_channels:
        raise ValueError(f"ch_names has {len(ch_names)} entries for {n_channels} channels")
    if not (_finite(sfreq) and sfreq > 0):
        raise ValueError(f"sfreq must be a positive number (got {sfreq!r})")
    if settings.hardware_lowpass_hz >= sfreq / 2:
        raise ValueError(
            f"ScannerArtefactSettings.hardware_lowpass_hz ({settings.hardware_lowpass_hz:g} Hz) must be "
            f"below half the sampling rate ({sfreq / 2:g} Hz), as an amplifier's anti-alias filter is"
        )
    if not (_finite(tr) and tr > 0):
        raise ValueError(f"tr must be a positive number of seconds (got {tr!r})")
    if not (_is_int(n_volumes) and n_volumes >= 0):
        raise ValueError(f"n_volumes must be a whole number >= 0 (got {n_volumes!r})")
    if not _finite(first_volume):
        raise ValueError(f"first_volume must be a number of seconds (got {first_volume!r})")
    rate = settings.heart_rate_bpm
    if isinstance(rate, np.ndarray) and rate.size != n_times:
        raise ValueError(
            f"ScannerArtefactSettings.heart_rate_bpm holds {rate.size} values; a schedule needs one per "
            f"sample ({n_times})"
        )
    if any(v >= n_volumes for v in settings.missing_triggers):
        raise ValueError(
            f"ScannerArtefactSettings.missing_triggers names volume(s) beyond the {n_volumes} acquired"
        )
    slot = slice_duration(tr, settings.slices_per_volume, settings.volume_gap)
    needed = slice_program_duration(settings)
    if slot < needed:
        raise ValueError(
            f"ScannerArtefactSettings.slices_per_volume: {settings.slices_per_volume} slices leave "
            f"{slot * 1e3:.1f} ms per slice, but one slice's gradient program "
            f"(readout_lines x echo_spacing + {_READOUT_START_MS + _AFTER_READOUT_MS:g} ms) "
            f"needs {needed * 1e3:.1f} ms"
        )

    stretch = 1 + settings.clock_mismatch_ppm * 1e-6
    # Onsets in samples, rounded well below a sample so whole-sample onsets are exactly whole.
    onset_samples = np.round((first_volume + np.arange(n_volumes) * tr * stretch) * sfreq, 6)
    volume_onsets = onset_samples / sfreq
    logged = np.setdiff1d(np.arange(n_volumes), np.array(settings.missing_triggers, dtype=int))
    trigger_times = np.rint(onset_samples[logged]) / sfreq

    # One stream per part: switching a part off leaves the others' randomness as it was.
    place_rng, gradient_rng, heart_rng, bcg_rng = rng.spawn(4)
    positions = _head_positions(ch_names, types, place_rng)
    gradient = np.zeros((n_channels, n_times), dtype=np.float32)
    if settings.gradients and n_volumes:
        _add_gradient(gradient, onset_samples, types, positions, sfreq, tr, stretch, gradient_rng, settings)

    heart = _heart(n_times, sfreq, heart_rng, settings)
    clean_out = np.array(clean, dtype=np.float32)
    ecg_rows = [i for i, t in enumerate(types) if t == "ecg"]
    for row in ecg_rows:
        clean_out[row] = heart.ecg
    bcg = np.zeros((n_channels, n_times), dtype=np.float32)
    bcg_rows = [i for i, t in enumerate(types) if t in ("eeg", "eog")]
    if settings.bcg and bcg_rows:
        _add_bcg(bcg, bcg_rows, positions, heart, sfreq, bcg_rng, settings)
    data = clean_out + gradient
    data += bcg
    return ScannerContamination(
        data=data,
        clean=clean_out,
        gradient=gradient,
        bcg=bcg,
        trigger_times=trigger_times,
        volume_onsets=volume_onsets,
        r_peaks=heart.r_peaks,
    )


def slice_duration(tr: float, slices: int, gap: float = 0.0) -> float:
    """Time between the starts of two slices (s): ``(tr - gap) / slices``.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    slices : int
        Slices per volume.
    gap : float
        Quiet time at the end of each volume (s).
    """
    return (tr - gap) / slices


def slice_frequency(tr: float, slices: int, gap: float = 0.0) -> float:
    """The slice frequency (Hz): the gradient artefact's fundamental, ``slices / (tr - gap)``.

    With TR 2.1 s and 35 slices (ds003768), 16.67 Hz.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    slices : int
        Slices per volume.
    gap : float
        Quiet time at the end of each volume (s).
    """
    return 1.0 / slice_duration(tr, slices, gap)


def slice_harmonics(tr: float, slices: int, max_hz: float, gap: float = 0.0) -> np.ndarray:
    """The slice frequency and its harmonics up to ``max_hz`` (Hz), where the gradient artefact's power is.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    slices : int
        Slices per volume.
    max_hz : float
        Highest frequency to list, e.g. the Nyquist frequency or the feature band's top.
    gap : float
        Quiet time at the end of each volume (s).

    Returns
    -------
    freqs : np.ndarray of float
    """
    fundamental = slice_frequency(tr, slices, gap)
    return fundamental * np.arange(1, int(max_hz / fundamental + 1e-9) + 1)


def slice_program_duration(settings: ScannerArtefactSettings) -> float:
    """Length of one slice's gradient program (s): the shortest slice time these settings allow."""
    return (_READOUT_START_MS + _AFTER_READOUT_MS) * 1e-3 + settings.readout_lines * settings.echo_spacing


def settings_record(settings: ScannerArtefactSettings) -> dict[str, Any]:
    """The settings as a JSON-ready dict (for a sidecar); a heart-rate schedule is summarised.

    Parameters
    ----------
    settings : ScannerArtefactSettings
        Settings to record.

    Returns
    -------
    record : dict
        Every field; a per-sample ``heart_rate_bpm`` becomes ``{"schedule": "per sample", "min": ...,
        "max": ..., "mean": ...}``.
    """
    rate = settings.heart_rate_bpm
    record = asdict(settings)
    if isinstance(rate, np.ndarray):
        record["heart_rate_bpm"] = {
            "schedule": "per sample",
            "min": float(rate.min()),
            "max": float(rate.max()),
            "mean": float(rate.mean()),
        }
    record["bcg_uv"] = list(settings.bcg_uv)
    record["ecg_dropouts"] = [list(d) for d in settings.ecg_dropouts]
    record["missing_triggers"] = list(settings.missing_triggers)
    return record


def gradient_waveforms(
    settings: ScannerArtefactSettings, tr: float, sfreq: float, phase: float = 0.0
) -> np.ndarray:
    """The hardware-filtered dG/dt of one volume on the three axes, sampled at ``sfreq``.

    Parameters
    ----------
    settings : ScannerArtefactSettings
        Slice count, gap, readout and hardware filter.
    tr : float
        Repetition time (s).
    sfreq : float
        Sampling rate (Hz).
    phase : float
        Where the volume starts, as a fraction of a sample before the first returned sample
        (0: on it).

    Returns
    -------
    waveforms : np.ndarray, shape (3, n)
        Axes x (read), y (phase), z (slice), arbitrary units (T/m/s), from the first sample at or
        after the volume's onset to when the filter has settled after it.
    """
    times, jumps, axes = _volume_events(settings, tr, 1.0)
    n = math.ceil((tr + _SETTLE_S) * sfreq)
    return _filtered_axes(times, jumps, axes, phase / sfreq, n, sfreq, settings)


# --- gradient artefact -------------------------------------------------------------------------


def _trapezoid(
    out: list[tuple[float, float, int]],
    axis: int,
    start_ms: float,
    ramp_ms: float,
    flat_ms: float,
    amp: float,
) -> None:
    """Slope changes (time s, jump in mT/m/s, axis) of one trapezoid (a triangle when ``flat_ms == 0``)."""
    slope = amp / (ramp_ms * 1e-3)
    for t_ms, jump in (
        (start_ms, slope),
        (start_ms + ramp_ms, -slope),
        (start_ms + ramp_ms + flat_ms, -slope),
        (start_ms + 2 * ramp_ms + flat_ms, slope),
    ):
        out.append((t_ms * 1e-3, jump, axis))


@lru_cache(maxsize=16)
def _slice_events(readout_lines: int, echo_spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slope changes of one slice's gradient program (x read, y phase, z slice)."""
    x, y, z = 0, 1, 2
    events: list[tuple[float, float, int]] = []
    _trapezoid(events, z, 0.3, 0.3, 1.5, 12.0)  # fat-saturation crusher
    _trapezoid(events, z, 2.5, 0.25, 2.6, 10.0)  # slice select, RF pulse at the plateau's centre
    _trapezoid(events, z, 5.35, 0.2, 0.9, -10.0 * 1.425 / 1.1)  # rephaser: half the select area
    esp_ms = echo_spacing * 1e3
    lobe_area = _READOUT_MT_M * (esp_ms - _RAMP_MS)
    _trapezoid(events, x, 5.35, 0.2, 0.9, -0.5 * lobe_area / 1.1)  # read prephaser
    blip_area = _BLIP_MT_M * 0.05
    _trapezoid(events, y, 5.35, 0.2, 0.9, -0.5 * readout_lines * blip_area / 1.1)  # phase prephaser
    for k in range(readout_lines):
        start = _READOUT_START_MS + k * esp_ms
        _trapezoid(events, x, start, _RAMP_MS, esp_ms - 2 * _RAMP_MS, _READOUT_MT_M * (-1) ** k)
        if k < readout_lines - 1:
            _trapezoid(events, y, start + esp_ms - 0.05, 0.05, 0.0, _BLIP_MT_M)
    end = _READOUT_START_MS + readout_lines * esp_ms
    _trapezoid(events, z, end + 0.2, 0.5, 2.5, 18.0)  # spoiler
    table = np.array(events)
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(int)


def _volume_events(
    settings: ScannerArtefactSettings, tr: float, stretch: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slope changes of a whole volume, on the amplifier's clock (times and slopes stretched)."""
    times, jumps, axes = _slice_events(settings.readout_lines, settings.echo_spacing)
    slot = slice_duration(tr, settings.slices_per_volume, settings.volume_gap)
    starts = np.arange(settings.slices_per_volume) * slot
    all_times = (starts[:, None] + times[None]).ravel() * stretch
    return all_times, np.tile(jumps, starts.size) / stretch, np.tile(axes, starts.size)


@lru_cache(maxsize=8)
def _step_response(order: int, cutoff_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Poles ``p`` and weights ``c`` of an analogue Butterworth step response ``1 + sum c e^(p t)``."""
    _, poles, gain = signal.butter(order, 2 * np.pi * cutoff_hz, analog=True, output="zpk")
    poles = np.asarray(poles, dtype=complex)
    residues = np.array([gain / np.prod(p - np.delete(poles, i)) for i, p in enumerate(poles)])
    return poles, residues / poles


def _filtered_axes(
    times: np.ndarray,
    jumps: np.ndarray,
    axes: np.ndarray,
    first_time: float,
    n: int,
    sfreq: float,
    settings: ScannerArtefactSettings,
) -> np.ndarray:
    """Exact samples of the low-passed piecewise-constant dG/dt, at ``first_time + m / sfreq``.

    Each slope change contributes the filter's step response from its (continuous) time on. The
    transient parts are complex exponentials, summed sample by sample with a one-pole recursion per
    filter pole, fed at the first sample after each change with the exponential's value there.
    """
    poles, weights = _step_response(settings.hardware_lowpass_order, float(settings.hardware_lowpass_hz))
    index = np.ceil((times - first_time) * sfreq - 1e-9).astype(np.int64)
    inside = index < n
    index, jumps, axes, times = index[inside], jumps[inside], axes[inside], times[inside]
    index = np.maximum(index, 0)
    lag = first_time + index / sfreq - times  # >= 0 (up to rounding): time since the change
    out = np.zeros((3, n))
    for axis in range(3):
        mine = axes == axis
        where, size, delay = index[mine], jumps[mine], lag[mine]
        out[axis] = np.cumsum(np.bincount(where, weights=size, minlength=n))
        for pole, weight in zip(poles, weights, strict=True):
            if pole.imag < 0:
                continue  # its conjugate is counted twice below
            fed = size * np.exp(pole * delay)
            feed = np.bincount(where, weights=fed.real, minlength=n) + 1j * np.bincount(
                where, weights=fed.imag, minlength=n
            )
            state = signal.lfilter([1.0], [1.0, -np.exp(pole / sfreq)], feed)
            out[axis] += (2.0 if pole.imag > 0 else 1.0) * (weight * state).real
    return out


def _add_gradient(
    gradient: np.ndarray,
    onset_samples: np.ndarray,
    types: list[str],
    positions: np.ndarray,
    sfreq: float,
    tr: float,
    stretch: float,
    rng: np.random.Generator,
    settings: ScannerArtefactSettings,
) -> None:
    """Add every volume's artefact, each channel with its own (drifting) coupling to the three axes."""
    n_times = gradient.shape[1]
    rows = [i for i, t in enumerate(types) if t in ("eeg", "eog", "ecg")]
    if not rows:
        return
    unit = positions[rows] / np.maximum(np.linalg.norm(positions[rows], axis=1, keepdims=True), 1e-12)
    # Loop areas depend on where the lead runs: partly on the electrode's place, partly on the cabling.
    coupling = 0.7 * unit * rng.choice([-1.0, 1.0], 3) + 0.5 * rng.standard_normal((len(rows), 3))
    coupling *= rng.lognormal(0.0, 0.3, (len(rows), 1))
    coupling[[k for k, i in enumerate(rows) if types[i] == "ecg"]] *= _ECG_LEAD_COUPLING
    times, jumps, axes = _volume_events(settings, tr, stretch)
    n = math.ceil((tr * stretch + _SETTLE_S) * sfreq) + 2
    cache: dict[float, np.ndarray] = {}

    def volume(phase: float) -> np.ndarray:
        if phase not in cache:
            cache[phase] = _filtered_axes(times, jumps, axes, -phase / sfreq, n, sfreq, settings)
        return cache[phase]

    eeg_like = [k for k, i in enumerate(rows) if types[i] == "eeg"] or list(range(len(rows)))
    # Peaks of the continuous artefact (one slice on a fine grid), so the scale is the same at any rate.
    slot = slice_duration(tr, settings.slices_per_volume, settings.volume_gap) * stretch
    first_slice = times < slot
    fine = _filtered_axes(
        times[first_slice],
        jumps[first_slice],
        axes[first_slice],
        0.0,
        math.ceil((slot + _SETTLE_S) * _FINE_HZ),
        _FINE_HZ,
        settings,
    )
    peaks = np.abs(coupling @ fine).max(axis=1)
    coupling *= settings.gradient_uv / float(np.median(peaks[eeg_like]))
    steps = settings.movement * float(np.sqrt(np.mean(coupling**2)))
    walk = np.cumsum(rng.standard_normal((onset_samples.size, len(rows), 3)), axis=0) * steps
    walk -= walk[0]
    for v, onset in enumerate(onset_samples):
        # Samples from one before the onset: the volume is the same function of (time - onset) for all.
        start = math.floor(onset) - 1
        if start >= n_times:
            break
        phase = float(onset - start)
        waveform = (coupling + walk[v]) @ volume(phase)
        lo, hi = max(start, 0), min(start + n, n_times)
        gradient[rows, lo:hi] += waveform[:, lo - start : hi - start].astype(np.float32)


# --- heart: ECG and ballistocardiogram ---------------------------------------------------------


@dataclass(frozen=True)
class _Heart:
    r_peaks: np.ndarray  # s
    respiration: np.ndarray  # respiratory phase (rad) at every beat
    ecg: np.ndarray  # float32, µV


def _heart(n_times: int, sfreq: float, rng: np.random.Generator, settings: ScannerArtefactSettings) -> _Heart:
    """R peaks from a variable heart rate, the ECG they make, and the breathing phase at each beat."""
    t = np.arange(n_times) / sfreq
    breath_rate = settings.respiration_hz * (1 + 0.1 * _slow_noise(rng, n_times, sfreq, 0.05))
    breath = 2 * np.pi * np.cumsum(breath_rate) / sfreq + rng.uniform(0, 2 * np.pi)
    rate = np.broadcast_to(np.asarray(settings.heart_rate_bpm, dtype=float), (n_times,)) / 60.0
    rate = (
        rate * (1 + settings.rsa_depth * np.sin(breath)) * (1 + 0.02 * _slow_noise(rng, n_times, sfreq, 0.02))
    )
    phase = np.cumsum(rate) / sfreq + rng.uniform(0, 1)
    beats = np.arange(math.ceil(phase[0]), math.floor(phase[-1]) + 1)
    r_peaks = np.interp(beats, phase, t)
    r_peaks = r_peaks + np.clip(
        rng.normal(0, settings.rr_jitter, r_peaks.size), -3 * settings.rr_jitter, 3 * settings.rr_jitter
    )
    r_peaks = r_peaks[(r_peaks >= 0) & (r_peaks < n_times / sfreq)]
    at_beat = np.interp(r_peaks, t, breath)
    rr = np.diff(r_peaks, prepend=r_peaks[0] - 1.0) if r_peaks.size else r_peaks
    rr = np.clip(rr, 0.3, 2.0)

    ecg = np.zeros(n_times)
    scale = settings.ecg_uv / 1000.0
    for peak, interval, resp in zip(r_peaks, rr, at_beat, strict=True):
        qt = np.sqrt(interval)  # Bazett: the T wave comes later at slower rates
        lo = max(0, math.ceil((peak - 0.25) * sfreq))
        hi = min(n_times, math.floor((peak + 0.3 * qt + 0.25) * sfreq) + 1)
        s = np.arange(lo, hi) / sfreq - peak
        r_amp = 1000 * (1 + 0.08 * np.sin(resp) + 0.02 * rng.standard_normal())
        ecg[lo:hi] += scale * (
            120 * _gauss(s, -0.17, 0.022)
            - 80 * _gauss(s, -0.03, 0.008)
            + r_amp * _gauss(s, 0.0, 0.009)
            - 220 * _gauss(s, 0.028, 0.010)
            + 280 * _gauss(s, 0.28 * qt, 0.05)
        )
    ecg += 40 * np.sin(breath) + 3 * rng.standard_normal(n_times)
    for start, stop in settings.ecg_dropouts:
        gate = np.clip(np.minimum(t - start, stop - t) / 0.05, 0, 1)  # 50 ms edges
        if gate.any():
            gate = 0.5 - 0.5 * np.cos(np.pi * gate)
            wander = 150 * _slow_noise(rng, n_times, sfreq, 0.5) + 20 * rng.standard_normal(n_times)
            ecg = ecg * (1 - gate) + gate * wander
    return _Heart(r_peaks=r_peaks, respiration=at_beat, ecg=ecg.astype(np.float32))


def _bcg_components(
    rng: np.random.Generator, duration: float, count: int = 3
) -> list[list[tuple[float, float, float]]]:
    """A few smooth multi-lobe temporal components: lists of (amplitude, centre s, width s) lobes."""
    components = []
    for _ in range(count):
        lobes = int(rng.integers(3, 6))
        # Lobes spread over the waveform, the first ones (the head's main recoil) the largest.
        spacing = 0.72 / (lobes - 1)
        centres = (0.1 + spacing * (np.arange(lobes) + rng.uniform(-0.15, 0.15, lobes))) * duration
        widths = rng.uniform(0.35, 0.5, lobes) * spacing * duration
        signs = (-1.0) ** np.arange(lobes) * rng.choice([-1.0, 1.0])
        amps = signs * rng.uniform(0.7, 1.0, lobes) * np.linspace(1.0, 0.5, lobes)
        components.append(list(zip(amps, centres, widths, strict=True)))
    return components


def _component(s: np.ndarray, lobes: list[tuple[float, float, float]], duration: float) -> np.ndarray:
    """One temporal component at times ``s`` after the BCG onset, zero outside ``[0, duration]``."""
    window = np.where((s >= 0) & (s <= duration), np.sin(np.pi * np.clip(s / duration, 0, 1)) ** 0.5, 0.0)
    return window * sum(a * _gauss(s, c, w) for a, c, w in lobes)


def _add_bcg(
    bcg: np.ndarray,
    rows: list[int],
    positions: np.ndarray,
    heart: _Heart,
    sfreq: float,
    rng: np.random.Generator,
    settings: ScannerArtefactSettings,
) -> None:
    """Add the per-channel, beat-locked BCG waveforms (spatially smooth mixes of a few components)."""
    n_times = bcg.shape[1]
    duration = settings.bcg_duration
    components = _bcg_components(rng, duration)
    count = len(components)
    mixing = _smooth_fields(rng, positions[rows], count)  # (n_rows, count)
    # Per-channel peak on the mean beat, then scale each channel to its amplitude in bcg_uv.
    grid = np.arange(0, duration, 1 / sfreq)
    reference = mixing @ np.array([_component(grid, c, duration) for c in components])
    peak = np.maximum(np.abs(reference).max(axis=1), 1e-12)
    low, high = settings.bcg_uv
    # Strong where the motion couples well (far from the fields' nodal lines), weak near them.
    level = np.linalg.norm(mixing, axis=1)
    spread = np.ptp(level)
    share = (level - level.min()) / spread if spread > 0 else np.full(level.size, 0.5)
    mixing *= ((low + (high - low) * share) / peak)[:, None]

    time_courses = np.zeros((count, n_times))
    for peak_time, resp in zip(heart.r_peaks, heart.respiration, strict=True):
        onset = peak_time + settings.bcg_delay + np.clip(rng.normal(0, settings.bcg_jitter), -0.01, 0.01)
        lo = max(0, math.ceil(onset * sfreq))
        hi = min(n_times, math.floor((onset + duration) * sfreq) + 1)
        if lo >= hi:
            continue
        s = np.arange(lo, hi) / sfreq - onset
        overall = (1 + settings.bcg_variation * np.clip(rng.standard_normal(), -2.5, 2.5)) * (
            1 + 0.5 * settings.bcg_variation * np.sin(resp)
        )
        shape = 1 + 0.3 * settings.bcg_variation * rng.standard_normal(count)
        for k, lobes in enumerate(components):
            time_courses[k, lo:hi] += overall * shape[k] * _component(s, lobes, duration)
    for k, row in enumerate(rows):
        bcg[row] = (mixing[k] @ time_courses).astype(np.float32)


# --- helpers -------------------------------------------------------------------------------------


def _gauss(s: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((s - centre) / width) ** 2)


def _slow_noise(rng: np.random.Generator, n_times: int, sfreq: float, cutoff_hz: float) -> np.ndarray:
    """Unit-variance smooth noise below about ``cutoff_hz``, drawn on a coarse grid and interpolated."""
    step = 1 / (4 * cutoff_hz)
    n_coarse = int(n_times / sfreq / step) + 8
    coarse = ndimage.gaussian_filter1d(rng.standard_normal(n_coarse), 2.0, mode="wrap")
    coarse /= max(float(coarse.std()), 1e-12)
    return np.interp(np.arange(n_times) / sfreq, np.arange(n_coarse) * step, coarse)


def _smooth_fields(rng: np.random.Generator, positions: np.ndarray, count: int) -> np.ndarray:
    """``count`` random low-order (linear + quadratic) fields over the head, at ``positions``."""
    unit = positions / np.maximum(np.linalg.norm(positions, axis=1, keepdims=True), 1e-12)
    x, y, z = unit.T
    basis = np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x**2 - y**2], axis=1)
    weights = (
        rng.standard_normal((basis.shape[1], count)) * np.array([0.3, 1, 1, 1, 0.6, 0.6, 0.6, 0.6])[:, None]
    )
    return basis @ weights


@lru_cache(maxsize=1)
def _template_positions() -> dict[str, np.ndarray]:
    import mne

    try:  # MNE >= 1.13 renamed the template; older releases only know the old name
        montage = mne.channels.make_standard_montage("colin27_1020")
    except ValueError:
        montage = mne.channels.make_standard_montage("standard_1020")
    return {name: np.asarray(pos, dtype=float) for name, pos in montage.get_positions()["ch_pos"].items()}


def _head_positions(ch_names: Sequence[str] | None, types: list[str], rng: np.random.Generator) -> np.ndarray:
    """Electrode positions (m).

    The 10-20 template for known names, below the eyes for the EOG, on the upper back for the ECG,
    random places on the head otherwise.
    """
    random_places = rng.standard_normal((len(types), 3))
    random_places *= 0.09 / np.linalg.norm(random_places, axis=1, keepdims=True)
    if ch_names is None:
        return random_places
    template = _template_positions()
    out = random_places.copy()
    for i, (name, kind) in enumerate(zip(ch_names, types, strict=True)):
        if name in template:
            out[i] = template[name]
        elif kind == "eog" and "Fp1" in template:
            out[i] = template["Fp1"] + np.array([0.0, 0.0, -0.035])
        elif kind == "ecg":
            out[i] = np.array([0.0, -0.12, -0.15])
    return out


def _finite(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
