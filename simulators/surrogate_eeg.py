"""Synthetic sleep EEG, EOG, chin EMG and ECG conditioned on a stage sequence.

The scalp potential is a sum of sources, each with a spatial topography over
the 10-20 electrode positions and a time course whose parameters follow the
scored stage of every 30 s epoch. Stage parameters cross-fade over
:data:`CROSSFADE_SECONDS` at transitions, so a stage change is not instant.
Potentials are modelled against an inactive reference; cortical sources reach
the mastoids (TP9, TP10, over bone and below the cortex) attenuated. The
channels are then re-referenced to FCz as in the ds003768 montage, so a
central-mastoid derivation such as C4 - TP9 is the classic sleep-scoring lead.

Stage signatures (AASM manual; amplitudes in :data:`PROFILES`):

- W: posterior alpha (8-12 Hz, waxing and waning), muscle activity (beta and
  gamma, largest at the temporal electrodes), blinks and saccades on the EOG,
  high chin EMG;
- N1: alpha drops out, fronto-central theta, vertex sharp waves at Cz, slow
  rolling eye movements;
- N2: central sleep spindles (11-16 Hz, 0.5-2 s) and frontal K-complexes on a
  moderate delta background, quiet eyes;
- N3: high-amplitude frontal slow waves (0.5-2 Hz, >= 75 uV peak to peak over
  well above 20 % of the epoch), steeper 1/f background;
- R: low-voltage mixed EEG (theta, slowed alpha), sawtooth wave trains at the
  vertex, bursts of rapid eye movements on the EOG, lowest chin EMG with
  brief twitches.

The aperiodic background mixes a flat (1/f) and a steep (1/f^2.5) component,
the steep share rising with depth; part of it is common to all channels, a
share that rises with depth so that coherence rises from W to N3. Every
subject has its own amplitude scale and peak frequencies (:class:`SubjectTraits`).
Units are microvolts; everything is deterministic given the random generator
and the traits. Sources are listed in ``docs/simulators.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from recordings.montage import EEG_CHANNELS, REFERENCE

STAGE_ORDER = ("W", "N1", "N2", "N3", "R")
"""Stages the synthesis knows; stage indices refer to this order."""

CROSSFADE_SECONDS = 20.0
"""Width of the window over which stage parameters cross-fade at a transition."""

MASTOID_GAIN = 0.15
"""Share of a cortical source's potential that reaches the mastoid electrodes."""

_MASTOIDS = ("TP9", "TP10")


@dataclass(frozen=True)
class StageProfile:
    """Parameters of every source in one stage (uV RMS at the source's peak electrode, events per min)."""

    alpha: float
    theta: float
    delta: float
    slow_wave: float
    beta: float
    muscle: float
    background: float
    steep_share: float
    common_share: float
    spindles_per_min: float
    kcomplexes_per_min: float
    vertex_per_min: float
    sawtooth_per_min: float
    rolling_eye: float
    saccades_per_min: float
    blinks_per_min: float
    rem_bursts_per_min: float
    chin_emg: float
    heart_rate: float


_FIELDS = (
    "alpha theta delta slow_wave beta muscle background steep_share common_share spindles_per_min "
    "kcomplexes_per_min vertex_per_min sawtooth_per_min rolling_eye saccades_per_min blinks_per_min "
    "rem_bursts_per_min chin_emg heart_rate"
).split()
# fmt: off
_TABLE = {  # one row per field of StageProfile, columns W, N1, N2, N3, R
    "alpha":              (16.0, 3.0,  2.5,  1.5,  4.0),
    "theta":              (3.0,  11.0, 7.0,  6.0,  8.0),
    "delta":              (4.0,  8.0,  16.0, 20.0, 6.0),
    "slow_wave":          (0.0,  0.0,  8.0,  55.0, 0.0),
    "beta":               (4.0,  2.0,  1.5,  1.0,  2.0),
    "muscle":             (9.0,  1.5,  1.0,  0.8,  0.6),
    "background":         (9.0,  9.0,  11.0, 13.0, 8.0),
    "steep_share":        (0.35, 0.50, 0.65, 0.80, 0.45),
    "common_share":       (0.20, 0.30, 0.45, 0.60, 0.30),
    "spindles_per_min":   (0.0,  0.2,  6.0,  1.5,  0.0),
    "kcomplexes_per_min": (0.0,  0.0,  2.0,  0.5,  0.0),
    "vertex_per_min":     (0.0,  3.0,  0.5,  0.0,  0.0),
    "sawtooth_per_min":   (0.0,  0.0,  0.0,  0.0,  2.5),
    "rolling_eye":        (4.0,  20.0, 3.0,  2.0,  3.0),
    "saccades_per_min":   (12.0, 0.5,  0.0,  0.0,  0.0),
    "blinks_per_min":     (14.0, 1.0,  0.0,  0.0,  0.0),
    "rem_bursts_per_min": (0.0,  0.0,  0.0,  0.0,  4.0),
    "chin_emg":           (14.0, 8.0,  6.0,  5.0,  2.0),
    "heart_rate":         (70.0, 64.0, 60.0, 58.0, 66.0),
}
# fmt: on
PROFILES: dict[str, StageProfile] = {
    stage: StageProfile(**{field: _TABLE[field][column] for field in _FIELDS})
    for column, stage in enumerate(STAGE_ORDER)
}

# Topography centres as 10-20 electrode names; widths in metres on the head.
_TOPOGRAPHY: dict[str, tuple[tuple[str, ...], float]] = {
    "alpha": (("O1", "Oz", "O2", "Pz"), 0.08),
    "theta": (("Fz", "Cz", "FC1", "FC2"), 0.08),
    "delta": (("Fz", "F3", "F4"), 0.11),
    "slow_wave": (("Fz", "F3", "F4"), 0.11),
    "spindle": (("Cz", "C3", "C4"), 0.07),
    "kcomplex": (("Fz", "FC1", "FC2"), 0.10),
    "vertex": (("Cz",), 0.07),
    "sawtooth": (("Cz", "C3", "C4"), 0.08),
    "beta": (("C3", "C4", "Fz"), 0.08),
    "muscle": (("T7", "T8", "TP9", "TP10"), 0.05),
}
# Where the EOG electrode (outer canthus) picks up the frontal scalp potential.
_EOG_EEG_SITE = "F7"
_EOG_EEG_SHARE = 0.8
_EOG_LEAK = {"Fp1": 0.35, "Fp2": 0.35, "F7": 0.15, "F8": 0.15, "F3": 0.06, "F4": 0.06}


@dataclass(frozen=True)
class SubjectTraits:
    """What differs between subjects: overall amplitude and peak frequencies.

    Attributes
    ----------
    amplitude : float
        Scale of every EEG source (skull thickness, age).
    alpha_hz : float
        Individual alpha peak frequency.
    spindle_hz : float
        Centre of the subject's spindle frequencies.
    slow_wave_gain : float
        Extra scale of N3 slow waves (slow-wave activity varies widely with age).
    theta_hz : float
        Centre of the theta band in N1 and REM.
    """

    amplitude: float = 1.0
    alpha_hz: float = 10.0
    spindle_hz: float = 13.0
    slow_wave_gain: float = 1.0
    theta_hz: float = 6.0


def subject_traits(seed: int) -> SubjectTraits:
    """The traits of one surrogate subject, drawn reproducibly from ``seed``.

    Parameters
    ----------
    seed : int
        Identifies the subject (e.g. its number).

    Returns
    -------
    traits : SubjectTraits
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    return SubjectTraits(
        amplitude=float(rng.uniform(0.85, 1.2)),
        alpha_hz=float(rng.uniform(9.0, 11.0)),
        spindle_hz=float(rng.uniform(12.0, 14.0)),
        slow_wave_gain=float(rng.uniform(0.9, 1.2)),
        theta_hz=float(rng.uniform(5.0, 7.0)),
    )


@lru_cache(maxsize=8)
def _positions(names: tuple[str, ...]) -> np.ndarray:
    import mne

    try:  # MNE >= 1.13 renamed the template; older releases only know the old name
        montage = mne.channels.make_standard_montage("colin27_1020")
    except ValueError:
        montage = mne.channels.make_standard_montage("standard_1020")
    positions = montage.get_positions()["ch_pos"]
    unknown = [name for name in names if name not in positions]
    if unknown:
        raise ValueError(f"no 10-20 position for channel(s) {', '.join(unknown)}")
    return np.array([positions[name] for name in names])


def electrode_positions(names: tuple[str, ...] = EEG_CHANNELS) -> np.ndarray:
    """Head positions (metres) of 10-20 electrodes from MNE's standard template.

    Parameters
    ----------
    names : tuple of str
        Electrode names; the ds003768 EEG channels by default.

    Returns
    -------
    positions : np.ndarray, shape (n_names, 3)
    """
    return _positions(tuple(names)).copy()


def topography(
    centres: tuple[str, ...], width: float, positions: np.ndarray, names: tuple[str, ...] = EEG_CHANNELS
) -> np.ndarray:
    """Gaussian spatial weights (peak 1) around the mean position of ``centres``.

    Parameters
    ----------
    centres : tuple of str
        Electrodes whose mean position is the source's centre.
    width : float
        Standard deviation of the Gaussian, in metres.
    positions : np.ndarray, shape (n_channels, 3)
        Positions of the channels the weights are for.
    names : tuple of str
        Names of those channels (unused for the centre, kept for the order).

    Returns
    -------
    weights : np.ndarray, shape (n_channels,)
    """
    centre = _positions(tuple(centres)).mean(axis=0)
    distance = np.linalg.norm(positions - centre, axis=1)
    weights = np.exp(-(distance**2) / (2 * width**2))
    return weights / weights.max()


def _stage_values(stage_per_sample: np.ndarray, values: dict[str, float]) -> np.ndarray:
    raw = np.zeros(stage_per_sample.size)
    for index, stage in enumerate(STAGE_ORDER):
        mask = stage_per_sample == index
        if stage in values:
            raw[mask] = values[stage]
        elif mask.any():
            raise ValueError(f"no value given for stage {stage}")
    return raw


def stage_envelope(
    stage_per_sample: np.ndarray,
    values: dict[str, float],
    sfreq: float,
    smooth_s: float = CROSSFADE_SECONDS,
) -> np.ndarray:
    """Per-sample value of a stage-dependent parameter, cross-faded at transitions.

    Parameters
    ----------
    stage_per_sample : np.ndarray of int
        Index into :data:`STAGE_ORDER` at every sample.
    values : dict
        The parameter's value per stage name.
    sfreq : float
        Sampling rate in Hz.
    smooth_s : float
        Width (s) of the Hann window the stage values are smoothed with.

    Returns
    -------
    envelope : np.ndarray of float, shape (n_times,)
    """
    raw = _stage_values(stage_per_sample, values)
    # Smooth on a coarse grid (stages change every 30 s at most) and interpolate back.
    step = max(1, int(sfreq / 10))
    coarse = raw[::step]
    width = max(1, int(smooth_s * sfreq / step))
    kernel = np.hanning(width + 2)[1:-1]
    kernel /= kernel.sum()
    padded = np.pad(coarse, (width // 2, width - width // 2 - 1), mode="edge")
    smooth = np.convolve(padded, kernel, mode="valid")
    if step == 1:
        return smooth
    return np.interp(np.arange(raw.size), np.arange(coarse.size) * step, smooth)


def band_noise(
    rng: np.random.Generator, n_times: int, sfreq: float, low: float, high: float, rows: int = 0
) -> np.ndarray:
    """Unit-variance Gaussian noise band-limited to [low, high] Hz (FFT filter).

    One series of ``n_times`` samples, or ``rows`` independent ones when ``rows > 0``.
    """
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    taper = np.clip(np.minimum(freqs - low + 0.25, high + 0.25 - freqs) / 0.5, 0, 1)
    out = np.empty((max(rows, 1), n_times))
    for row in range(out.shape[0]):  # row by row: the same draws as one block, a fraction of the memory
        signal = np.fft.irfft(np.fft.rfft(rng.standard_normal(n_times)) * taper, n=n_times)
        out[row] = signal / max(float(signal.std()), 1e-12)
    return out if rows else out[0]


def pink_noise(
    rng: np.random.Generator, shape: tuple[int, int], sfreq: float, exponent: float = 2.0
) -> np.ndarray:
    """Unit-variance noise with a 1/f^exponent power spectrum above 0.3 Hz, per row."""
    n_times = shape[1]
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    gain = 1 / np.maximum(freqs, 0.3) ** (exponent / 2)
    gain[freqs > min(0.45 * sfreq, 100.0)] = 0.0
    out = np.empty(shape)
    for row in range(shape[0]):  # one row at a time keeps a night's memory use small
        spectrum = np.fft.rfft(rng.standard_normal(n_times))
        signal = np.fft.irfft(spectrum * gain, n=n_times)
        out[row] = signal / max(float(signal.std()), 1e-12)
    return out


def _onsets(
    rng: np.random.Generator, per_minute: np.ndarray, sfreq: float, refractory_s: float
) -> np.ndarray:
    """Event onsets (samples) of a Poisson process whose rate follows ``per_minute``.

    Drawn on a 0.1 s grid; events closer than ``refractory_s`` to the previous kept one are dropped.
    """
    step = max(1, int(sfreq / 10))
    rate = per_minute[::step] / 60 * step / sfreq
    onsets = np.flatnonzero(rng.random(rate.size) < rate) * step
    if onsets.size < 2:
        return onsets
    keep = np.ones(onsets.size, dtype=bool)
    gap = int(refractory_s * sfreq)
    last = onsets[0]
    for i in range(1, onsets.size):  # sequential by nature; a night has a few thousand events
        if onsets[i] - last < gap:
            keep[i] = False
        else:
            last = onsets[i]
    return onsets[keep]


def _place(n_times: int, onsets: np.ndarray, waveforms: np.ndarray) -> np.ndarray:
    """Sum of ``waveforms[i]`` starting at ``onsets[i]`` (vectorised overlap-add)."""
    out = np.zeros(n_times)
    if onsets.size == 0:
        return out
    index = onsets[:, None] + np.arange(waveforms.shape[1])[None]
    inside = index < n_times
    np.add.at(out, index[inside], waveforms[inside])
    return out


def _spindles(rng: np.random.Generator, rate: np.ndarray, sfreq: float, centre_hz: float) -> np.ndarray:
    onsets = _onsets(rng, rate, sfreq, refractory_s=3.0)
    t = np.arange(int(2.0 * sfreq)) / sfreq
    duration = rng.uniform(0.5, 2.0, onsets.size)[:, None]
    freq = np.clip(centre_hz + rng.normal(0, 0.7, onsets.size), 11.0, 16.0)[:, None]
    inside = t[None] < duration
    envelope = np.where(inside, np.sin(np.pi * t[None] / duration) ** 2, 0.0)
    amplitude = rng.uniform(18, 30, onsets.size)[:, None]
    phase = rng.uniform(0, 2 * np.pi, onsets.size)[:, None]
    return _place(rate.size, onsets, amplitude * envelope * np.sin(2 * np.pi * freq * t[None] + phase))


def _kcomplexes(rng: np.random.Generator, rate: np.ndarray, sfreq: float) -> np.ndarray:
    onsets = _onsets(rng, rate, sfreq, refractory_s=5.0)
    t = np.arange(int(1.5 * sfreq)) / sfreq
    amplitude = rng.uniform(90, 160, onsets.size)[:, None]
    negative = -np.exp(-((t - 0.4) ** 2) / (2 * 0.1**2))
    positive = 0.45 * np.exp(-((t - 0.85) ** 2) / (2 * 0.17**2))
    return _place(rate.size, onsets, amplitude * (negative + positive)[None])


def _vertex_waves(rng: np.random.Generator, rate: np.ndarray, sfreq: float) -> np.ndarray:
    onsets = _onsets(rng, rate, sfreq, refractory_s=4.0)
    t = np.arange(int(0.5 * sfreq)) / sfreq
    amplitude = rng.uniform(50, 90, onsets.size)[:, None]
    sharp = -np.exp(-((t - 0.15) ** 2) / (2 * 0.04**2)) + 0.3 * np.exp(-((t - 0.3) ** 2) / (2 * 0.06**2))
    return _place(rate.size, onsets, amplitude * sharp[None])


def _sawtooth_trains(rng: np.random.Generator, rate: np.ndarray, sfreq: float) -> np.ndarray:
    """Trains of 2-5 Hz triangular (sawtooth) waves lasting 1-4 s."""
    onsets = _onsets(rng, rate, sfreq, refractory_s=6.0)
    t = np.arange(int(4.0 * sfreq)) / sfreq
    freq = rng.uniform(2.0, 5.0, onsets.size)[:, None]
    duration = rng.uniform(1.0, 4.0, onsets.size)[:, None]
    cycle = (t[None] * freq) % 1.0
    # Slow rise then a fast fall: the notched, asymmetric sawtooth shape.
    saw = np.where(cycle < 0.75, cycle / 0.75, (1 - cycle) / 0.25) - 0.5
    envelope = np.where(t[None] < duration, np.sqrt(np.clip(np.sin(np.pi * t[None] / duration), 0, 1)), 0.0)
    amplitude = rng.uniform(40, 70, onsets.size)[:, None]
    return _place(rate.size, onsets, amplitude * envelope * saw)


def _eye_movements(rng: np.random.Generator, rate: np.ndarray, sfreq: float, burst: bool) -> np.ndarray:
    """Saccades: a fast step (about 50 ms) that drifts back over about a second.

    With ``burst`` each event is a burst of 2-8 saccades (rapid eye movements of REM).
    """
    onsets = _onsets(rng, rate, sfreq, refractory_s=2.0 if burst else 0.5)
    if burst and onsets.size:
        counts = rng.integers(2, 9, onsets.size)
        offsets = np.concatenate([np.cumsum(rng.uniform(0.25, 0.9, n)) - 0.25 for n in counts])
        onsets = np.repeat(onsets, counts) + (offsets * sfreq).astype(int)
    t = np.arange(int(1.5 * sfreq)) / sfreq
    rise = 1 / (1 + np.exp(-(t - 0.05) / 0.012))
    shape = rise * np.exp(-np.maximum(t - 0.05, 0) / 0.6)
    sign = rng.choice([-1.0, 1.0], onsets.size)[:, None]
    amplitude = (
        rng.uniform(60, 160, onsets.size)[:, None] if burst else rng.uniform(40, 100, onsets.size)[:, None]
    )
    return _place(rate.size, onsets, sign * amplitude * shape[None])


def _blinks(rng: np.random.Generator, rate: np.ndarray, sfreq: float) -> np.ndarray:
    onsets = _onsets(rng, rate, sfreq, refractory_s=1.0)
    t = np.arange(int(0.5 * sfreq)) / sfreq
    amplitude = rng.uniform(100, 200, onsets.size)[:, None]
    return _place(rate.size, onsets, amplitude * np.exp(-((t - 0.2) ** 2) / (2 * 0.05**2))[None])


def _ecg(rng: np.random.Generator, heart_rate: np.ndarray, sfreq: float) -> np.ndarray:
    n_times = heart_rate.size
    phase = np.cumsum(heart_rate / 60 / sfreq * (1 + 0.03 * band_noise(rng, n_times, sfreq, 0.05, 0.4)))
    beats = np.flatnonzero(np.diff(np.floor(phase)) > 0)
    t = np.arange(int(0.6 * sfreq)) / sfreq
    waveform = (
        900 * np.exp(-((t - 0.20) ** 2) / (2 * 0.010**2))
        - 120 * np.exp(-((t - 0.23) ** 2) / (2 * 0.012**2))
        + 150 * np.exp(-((t - 0.45) ** 2) / (2 * 0.040**2))
    )
    onsets = np.maximum(0, beats - int(0.2 * sfreq))
    return _place(
        n_times, onsets, np.broadcast_to(waveform, (onsets.size, t.size))
    ) + 10 * rng.standard_normal(n_times)


def _chin_emg(
    rng: np.random.Generator, level: np.ndarray, stage_per_sample: np.ndarray, sfreq: float
) -> np.ndarray:
    n_times = level.size
    high = min(90.0, 0.45 * sfreq)
    tone = level * band_noise(rng, n_times, sfreq, 10.0, high)
    # Phasic twitches of REM: brief bursts on the atonic background.
    rem = (stage_per_sample == STAGE_ORDER.index("R")).astype(float) * 6.0
    twitches = _onsets(rng, rem, sfreq, refractory_s=1.0)
    t = np.arange(int(0.25 * sfreq)) / sfreq
    burst = np.sin(np.pi * t / 0.25)
    gate = _place(n_times, twitches, np.broadcast_to(burst, (twitches.size, t.size)))
    return tone + 15 * gate * band_noise(rng, n_times, sfreq, 10.0, high) + 0.5 * rng.standard_normal(n_times)


def synthesize(
    stage_per_sample: np.ndarray,
    sfreq: float,
    rng: np.random.Generator,
    eeg_channels: tuple[str, ...] = EEG_CHANNELS,
    traits: SubjectTraits | None = None,
) -> dict[str, np.ndarray]:
    """Synthesize EEG (FCz reference), EOG, chin EMG and ECG for a stage sequence.

    Parameters
    ----------
    stage_per_sample : np.ndarray of int, shape (n_times,)
        Index into :data:`STAGE_ORDER` of the stage at every sample.
    sfreq : float
        Sampling rate in Hz (100 Hz or more).
    rng : np.random.Generator
        Source of randomness (seeded by the caller).
    eeg_channels : tuple of str
        10-20 names of the EEG channels to produce (any subset of MNE's template).
    traits : SubjectTraits | None
        The subject's amplitude and peak frequencies; population averages by default.

    Returns
    -------
    signals : dict
        ``"eeg"`` (n_channels, n_times), ``"eog"``, ``"emg"`` and ``"ecg"`` (n_times,), in microvolts.
    """
    traits = traits or SubjectTraits()
    stages = np.asarray(stage_per_sample, dtype=int)
    n_times = stages.size
    sites = tuple(dict.fromkeys((*eeg_channels, REFERENCE, _EOG_EEG_SITE, *_EOG_LEAK)))
    positions = _positions(sites)
    n_sites = len(sites)
    gain = np.array([MASTOID_GAIN if name in _MASTOIDS else 1.0 for name in sites])

    def envelope(field: str) -> np.ndarray:
        return stage_envelope(stages, {s: getattr(PROFILES[s], field) for s in STAGE_ORDER}, sfreq)

    def weights(source: str) -> np.ndarray:
        centres, width = _TOPOGRAPHY[source]
        return topography(centres, width, positions, sites)

    scale = traits.amplitude
    steep = envelope("steep_share")
    common = envelope("common_share")
    background = scale * envelope("background")
    # Built in place, one row at a time, to keep a night's memory use low.
    aperiodic = pink_noise(rng, (n_sites + 1, n_times), sfreq, exponent=1.0)
    flat_weight, steep_weight = np.sqrt(1 - steep), np.sqrt(steep)
    for row in range(n_sites + 1):
        aperiodic[row] *= flat_weight
        aperiodic[row] += steep_weight * pink_noise(rng, (1, n_times), sfreq, exponent=2.5)[0]
    # Over bone the local aperiodic part is smaller and the widespread cortical part as small as any source.
    local_weight = background * np.sqrt(1 - common)
    common_part = background * np.sqrt(common) * aperiodic[-1]
    potential = aperiodic[:-1]
    for row in range(n_sites):
        potential[row] *= local_weight * (0.6 if gain[row] < 1 else 1.0)
        potential[row] += gain[row] * common_part
    del common_part

    waxing = 0.55 + 0.45 * np.tanh(1.5 * band_noise(rng, n_times, sfreq, 0.05, 0.3))
    rem_share = envelope("sawtooth_per_min") / PROFILES["R"].sawtooth_per_min
    alpha_hz = traits.alpha_hz - 1.0 * rem_share  # REM alpha runs 1-2 Hz slower than waking alpha
    alpha_phase = 2 * np.pi * np.cumsum(alpha_hz + 0.4 * band_noise(rng, n_times, sfreq, 0.1, 1.0)) / sfreq
    alpha_carrier = np.sqrt(2) * np.sin(alpha_phase) * (1 + 0.3 * band_noise(rng, n_times, sfreq, 0.5, 2.0))
    th = traits.theta_hz
    sources = {
        "alpha": envelope("alpha") * waxing * alpha_carrier,
        "theta": envelope("theta") * band_noise(rng, n_times, sfreq, th - 1.5, th + 1.5),
        "delta": envelope("delta") * band_noise(rng, n_times, sfreq, 1.0, 4.0),
        "slow_wave": traits.slow_wave_gain
        * envelope("slow_wave")
        * band_noise(rng, n_times, sfreq, 0.5, 1.8),
        "spindle": _spindles(rng, envelope("spindles_per_min"), sfreq, traits.spindle_hz),
        "kcomplex": _kcomplexes(rng, envelope("kcomplexes_per_min"), sfreq),
        "vertex": _vertex_waves(rng, envelope("vertex_per_min"), sfreq),
        "sawtooth": _sawtooth_trains(rng, envelope("sawtooth_per_min"), sfreq),
        "beta": envelope("beta") * band_noise(rng, n_times, sfreq, 16.0, 26.0),
    }
    for name, signal in sources.items():
        for row, weight in enumerate(scale * weights(name) * gain):
            potential[row] += weight * signal
    # Muscle at the scalp is local (incoherent between channels) and largest over the temporalis.
    muscle = envelope("muscle")
    muscle_weights = weights("muscle")
    for row in range(n_sites):
        local = band_noise(rng, n_times, sfreq, 20.0, min(45.0, 0.45 * sfreq))
        potential[row] += muscle_weights[row] * muscle * local

    eye = (
        envelope("rolling_eye") * band_noise(rng, n_times, sfreq, 0.2, 0.7)
        + _eye_movements(rng, envelope("saccades_per_min"), sfreq, burst=False)
        + _eye_movements(rng, envelope("rem_bursts_per_min"), sfreq, burst=True)
        + 0.4 * _blinks(rng, envelope("blinks_per_min"), sfreq)
    )
    for name, share in _EOG_LEAK.items():
        potential[sites.index(name)] += share * eye
    eog = eye + _EOG_EEG_SHARE * potential[sites.index(_EOG_EEG_SITE)] + 3 * rng.standard_normal(n_times)
    reference = potential[sites.index(REFERENCE)]
    eeg = potential[[sites.index(name) for name in eeg_channels]] - reference
    emg = _chin_emg(rng, envelope("chin_emg"), stages, sfreq)
    ecg = _ecg(rng, envelope("heart_rate"), sfreq)
    return {"eeg": eeg, "eog": eog - reference, "emg": emg, "ecg": ecg}


def synthesize_eeg(
    stage_per_sample: np.ndarray,
    sfreq: float,
    rng: np.random.Generator,
    traits: SubjectTraits | None = None,
) -> np.ndarray:
    """Synthesize the 32 channels of one ds003768-montage run.

    Parameters
    ----------
    stage_per_sample : np.ndarray of int, shape (n_times,)
        Index into :data:`STAGE_ORDER` of the stage at every sample.
    sfreq : float
        Sampling rate in Hz.
    rng : np.random.Generator
        Source of randomness (seeded by the caller).
    traits : SubjectTraits | None
        The subject's traits; population averages by default.

    Returns
    -------
    data : np.ndarray of float64, shape (32, n_times)
        30 EEG channels (reference FCz), EOG and ECG, in microvolts, in
        :data:`recordings.montage.CHANNELS` order.
    """
    signals = synthesize(stage_per_sample, sfreq, rng, EEG_CHANNELS, traits)
    return np.vstack([signals["eeg"], signals["eog"], signals["ecg"]])


def profile_table() -> list[tuple[str, ...]]:
    """Rows ``(field, W, N1, N2, N3, R)`` of :data:`PROFILES`, for documentation."""
    return [
        (f.name, *(f"{getattr(PROFILES[s], f.name):g}" for s in STAGE_ORDER)) for f in fields(StageProfile)
    ]
