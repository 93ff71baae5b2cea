"""Online BCG correction against the clean EEG: quality, ECG dropout, heart-rate change, chunking."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from scipy import signal

from stream.bcg_correction import BEATS_FROM_EEG, UNCORRECTED, BcgCorrector
from tests.bcg_signals import Recording, make_recording

SFREQ = 250.0
N_EEG = 16
BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0), "sigma/beta": (12.0, 30.0)}
SETTLED = 20.0  # s: the template is ready well before (8 beats), and full (30 beats) about here


def corrector(rec: Recording, ecg: bool = True, **options) -> BcgCorrector:
    corrected = np.r_[np.ones(rec.clean.shape[1], dtype=bool), False]
    return BcgCorrector(rec.sfreq, corrected.size, corrected, rec.clean.shape[1] if ecg else None, **options)


def run(c: BcgCorrector, times: np.ndarray, data: np.ndarray, chunk: int | None = None, watch=None):
    """Feed in chunks, flush; the output and its spans (``watch(c, t)`` called after each chunk)."""
    step = chunk or times.size
    out_t, out_d, spans = [], [], []
    for start in range(0, times.size, step):
        t, d, s = c.process(times[start : start + step], data[start : start + step])
        out_t.append(t)
        out_d.append(d)
        spans += s
        if watch is not None:
            watch(c, float(times[min(start + step, times.size) - 1]))
    t, d, s = c.flush()
    return np.concatenate([*out_t, t]), np.concatenate([*out_d, d]), spans + s


def merged(spans: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    for start, end, kind in spans:
        if out and out[-1][2] == kind and abs(out[-1][1] - start) < 1e-6:
            out[-1] = (out[-1][0], end, kind)
        else:
            out.append((start, end, kind))
    return out


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])


def band_ratios(corrected: np.ndarray, clean: np.ndarray) -> dict[str, np.ndarray]:
    """Per band and channel, Welch power of the corrected EEG over the clean EEG's."""
    freqs, p_corr = signal.welch(corrected, SFREQ, nperseg=1024, axis=0)
    _, p_clean = signal.welch(clean, SFREQ, nperseg=1024, axis=0)
    ratios = {}
    for name, (lo, hi) in BANDS.items():
        band = (freqs >= lo) & (freqs < hi)
        ratios[name] = p_corr[band].sum(axis=0) / p_clean[band].sum(axis=0)
    return ratios


def offline_reference(rec: Recording, before: float = 0.1, after: float = 0.8, beats: int = 30) -> np.ndarray:
    """Non-causal average artefact subtraction at the true R peaks: each beat's template is the mean
    of the ``beats`` nearest other beats' epochs, half before and half after it (centred), scaled
    to the epoch by least squares; applied up to the next beat's epoch, like the online version."""
    n_before, n_after = round(before * SFREQ), round(after * SFREQ)
    peaks = np.round((rec.r_peaks - rec.times[0]) * SFREQ).astype(int)
    peaks = peaks[(peaks >= n_before) & (peaks + n_after < rec.times.size)]
    raw = rec.clean + rec.bcg
    epochs = np.stack([raw[p - n_before : p + n_after + 1] for p in peaks])  # (beats, samples, channels)
    out = raw.copy()
    for k, p in enumerate(peaks):
        lo = min(max(k - beats // 2, 0), peaks.size - beats - 1)
        others = [j for j in range(lo, lo + beats + 1) if j != k][:beats]
        template = epochs[others].mean(axis=0)
        centred = template - template.mean(axis=0)
        target = epochs[k] - epochs[k].mean(axis=0)
        gain = (centred * target).sum(axis=0) / (centred * centred).sum(axis=0)
        stop = min(p + n_after + 1, peaks[k + 1] - n_before) if k + 1 < peaks.size else p + n_after + 1
        out[p - n_before : stop] -= (gain * template)[: stop - (p - n_before)]
    return out


@cache
def steady() -> Recording:
    return make_recording(150.0, SFREQ, N_EEG, seed=11)


@cache
def steady_corrected() -> tuple[np.ndarray, np.ndarray, list, dict]:
    rec = steady()
    c = corrector(rec)
    statuses: dict[float, dict] = {}
    t, d, spans = run(
        c, rec.times, rec.data, 250, lambda c, now: statuses.__setitem__(round(now - 1000), c.status())
    )
    return t, d, spans, statuses


def test_corrected_eeg_matches_the_clean_eeg_and_the_offline_reference():
    rec = steady()
    times, data, spans, _ = steady_corrected()
    np.testing.assert_array_equal(times, rec.times)  # every sample once, in order
    keep = slice(round(SETTLED * SFREQ), None)
    clean, raw = rec.clean[keep], (rec.clean + rec.bcg)[keep]
    online = data[keep, :N_EEG].astype(np.float64)
    r_online = correlations(online, clean)
    r_raw = correlations(raw, clean)
    assert np.median(r_raw) < 0.6  # the artefact is there to remove
    assert np.median(r_online) >= 0.95 and r_online.min() >= 0.93
    for name, ratio in band_ratios(online, clean).items():
        assert np.all(np.abs(ratio - 1) <= 0.10), (name, ratio)
    offline = offline_reference(rec)[keep]
    r_offline = correlations(offline, clean)
    # The causal version, with beats from its own ECG detector, comes close to the centred
    # reference that knows the true R peaks.
    assert np.median(r_online) >= np.median(r_offline) - 0.02
    # After the first beats nothing is flagged.
    assert all(start < 1000 + 10 for start, _, _ in spans)


def test_status_figures_are_sensible():
    _, _, _, statuses = steady_corrected()
    early, late = statuses[3], statuses[140]
    assert early["template_ready"] is False and early["residual_power_ratio"] is None
    assert late["template_ready"] is True and late["beats_in_template"] == 30
    assert late["heart_rate_bpm"] == pytest.approx(62, rel=0.06)
    assert late["ecg_quality"] == "good" and late["beat_source"] == "ecg"
    assert 0 <= late["residual_power_ratio"] < 0.05
    assert late["latency_s"] == pytest.approx(1.1)
    json.dumps(late)  # JSON-ready


@pytest.mark.parametrize("fault", ["flat", "nan", "noise"])
def test_an_ecg_dropout_of_20_s_is_bridged_by_beats_found_in_the_eeg(fault):
    rec = make_recording(120.0, SFREQ, N_EEG, seed=12)
    data = rec.data
    lo, hi = round(50 * SFREQ), round(70 * SFREQ)
    if fault == "flat":
        data[lo:hi, N_EEG] = data[lo, N_EEG]
    elif fault == "nan":
        data[lo:hi, N_EEG] = np.nan
    else:
        data[lo:hi, N_EEG] = np.random.default_rng(3).normal(0, 300.0, hi - lo)
    statuses = {}
    c = corrector(rec)
    _, out, spans = run(
        c, rec.times, data, 250, lambda c, now: statuses.__setitem__(round(now - 1000), c.status())
    )
    inside = slice(lo, hi)
    r = correlations(out[inside, :N_EEG].astype(np.float64), rec.clean[inside])
    assert np.median(r) >= 0.9
    # The dropout is flagged as corrected at beats found in the EEG, and nothing is left uncorrected.
    from_eeg = [(s - 1000, e - 1000) for s, e, kind in merged(spans) if kind == BEATS_FROM_EEG]
    covered = sum(min(e, 70) - max(s, 50) for s, e in from_eeg if e > 50 and s < 70)
    assert covered >= 15.0
    assert all(48 <= s and e <= 78 for s, e in from_eeg)  # from the last beats before it to a few after
    assert not [s for s, _, kind in spans if kind == UNCORRECTED and s > 1010]
    assert statuses[60]["ecg_quality"] == ("poor" if fault == "noise" else "absent")
    assert statuses[60]["beat_source"] == "eeg"
    assert statuses[110]["ecg_quality"] == "good" and statuses[110]["beat_source"] == "ecg"
    whole = correlations(
        out[round(SETTLED * SFREQ) :, :N_EEG].astype(np.float64), rec.clean[round(SETTLED * SFREQ) :]
    )
    assert np.median(whole) >= 0.95


def test_a_heart_rate_step_is_followed():
    rec = make_recording(150.0, SFREQ, N_EEG, seed=13, bpm=lambda t: 60.0 if t < 75 else 90.0)
    statuses = {}
    _, out, spans = run(
        corrector(rec),
        rec.times,
        rec.data,
        250,
        lambda c, now: statuses.__setitem__(round(now - 1000), c.status()),
    )
    assert statuses[70]["heart_rate_bpm"] == pytest.approx(60, rel=0.06)
    assert statuses[145]["heart_rate_bpm"] == pytest.approx(90, rel=0.06)
    after = slice(round(80 * SFREQ), None)  # from a few beats after the step
    corrected, clean = out[after, :N_EEG].astype(np.float64), rec.clean[after]
    assert np.median(correlations(corrected, clean)) >= 0.95
    # At 90 bpm the epochs (0.9 s) overlap by a third of a beat: every band within 10 % on the
    # median channel, and within 15 % on the worst.
    for name, ratio in band_ratios(corrected, clean).items():
        assert abs(np.median(ratio) - 1) <= 0.10 and np.all(np.abs(ratio - 1) <= 0.15), (name, ratio)
    assert not [s for s, _, _ in spans if 1010 < s < 1148]  # the end of a recording is not followed by a beat


def test_without_ecg_and_template_the_eeg_passes_through_flagged():
    rec = make_recording(30.0, SFREQ, 8, seed=14)
    statuses: list[dict] = []
    c = corrector(rec, ecg=False)
    times, out, spans = run(c, rec.times, rec.data, 100, lambda c, now: statuses.append(c.status()))
    assert statuses[-1]["ecg_quality"] == "absent" and statuses[-1]["beat_source"] is None
    assert statuses[-1]["template_ready"] is False and statuses[-1]["beats"] == 0
    np.testing.assert_array_equal(times, rec.times)
    np.testing.assert_array_equal(out, rec.data.astype(np.float32))
    assert merged(spans) == [(rec.times[0], rec.times[-1] + 1 / SFREQ, UNCORRECTED)]


def test_non_finite_input_stays_in_its_samples_and_out_of_the_templates():
    rec = make_recording(100.0, SFREQ, N_EEG, seed=15)
    data = rec.data
    lo, hi = round(30 * SFREQ), round(35 * SFREQ)
    data[lo:hi, 3] = np.nan
    _, out, _ = run(corrector(rec), rec.times, data, 250)
    bad = ~np.isfinite(out)
    assert bad[lo:hi, 3].all() and bad.sum() == hi - lo
    later = slice(round(40 * SFREQ), None)
    r = correlations(out[later, :N_EEG].astype(np.float64), rec.clean[later])
    assert r[3] >= 0.93 and np.median(r) >= 0.95


def test_output_is_held_exactly_the_latency():
    rec = make_recording(20.0, SFREQ, 4, seed=16)
    c = corrector(rec)
    delay = round(c.latency * SFREQ)
    out = 0
    for start in range(0, rec.times.size, 123):
        t, _, _ = c.process(rec.times[start : start + 123], rec.data[start : start + 123])
        fed = min(start + 123, rec.times.size)
        out += t.size
        assert out == max(0, fed - delay)
        if t.size:
            assert t[-1] == rec.times[fed - delay - 1]
    t, _, _ = c.flush()
    assert out + t.size == rec.times.size


def test_any_chunking_gives_identical_output():
    rec = make_recording(60.0, SFREQ, 8, seed=17)
    data = rec.data
    data[round(35 * SFREQ) : round(45 * SFREQ), 8] = np.nan  # an ECG dropout: beats from the EEG too
    reference = run(corrector(rec), rec.times, data)
    kinds = {kind for _, _, kind in reference[2]}
    assert kinds == {UNCORRECTED, BEATS_FROM_EEG}
    for chunk in (1, 37, 250):
        times, out, spans = run(corrector(rec), rec.times, data, chunk)
        np.testing.assert_array_equal(times, reference[0])
        np.testing.assert_array_equal(out, reference[1])
        assert merged(spans) == merged(reference[2])


def test_reset_starts_over():
    rec = make_recording(30.0, SFREQ, 4, seed=18)
    c = corrector(rec)
    first = run(c, rec.times, rec.data, 500)
    c.reset()
    second = run(c, rec.times, rec.data, 500)
    np.testing.assert_array_equal(first[1], second[1])
    assert c.status()["beats"] == 0


def test_bad_configuration_is_refused_with_a_clear_error():
    mask = np.ones(4, dtype=bool)
    with pytest.raises(ValueError, match="at least 100 Hz"):
        BcgCorrector(50.0, 4, mask, None)
    with pytest.raises(ValueError, match="'corrected' has 3 entries for 4 channels"):
        BcgCorrector(SFREQ, 4, mask[:3], None)
    with pytest.raises(ValueError, match="ECG channel 7"):
        BcgCorrector(SFREQ, 4, mask, 7)
    with pytest.raises(ValueError, match="min_template_beats"):
        BcgCorrector(SFREQ, 4, mask, None, template_beats=5, min_template_beats=8)
    with pytest.raises(ValueError, match="shape"):
        BcgCorrector(SFREQ, 4, mask, None).process(np.arange(3.0), np.zeros((3, 5)))
