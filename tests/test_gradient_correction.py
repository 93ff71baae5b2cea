"""Online gradient-artefact correction against the clean signal of a surrogate with a known artefact."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from stream.decimation import StreamingDecimator
from stream.gradient_correction import (
    TRIGGER_INFERRED,
    UNCORRECTED,
    GradientCorrector,
    _Ring,
    offline_aas,
)
from tests.gradient_surrogate import Surrogate, make_surrogate

FEATURE_RATE = 250.0


def corrector(s: Surrogate, **options) -> GradientCorrector:
    mask = np.ones(s.clean.shape[1], dtype=bool)
    mask[-1] = False  # the misc sample counter
    options.setdefault("tr", s.tr)
    options.setdefault("slices_per_volume", s.slices)
    return GradientCorrector(s.sfreq, s.clean.shape[1], mask, **options)


def feed(
    g: GradientCorrector,
    s: Surrogate,
    chunk: int,
    triggers: np.ndarray | None = None,
    delays: np.ndarray | None = None,
    upfront: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, str]], list[int]]:
    """Feed the contaminated signal in chunks, each trigger once the data passed its stamp (+ delay).

    Returns the output, the spans and, after every call, how many input samples were still held.
    """
    triggers = s.triggers if triggers is None else triggers
    delays = np.zeros(triggers.size) if delays is None else delays
    if upfront:
        g.add_triggers(triggers)
    sent = np.zeros(triggers.size, dtype=bool) | upfront
    data = s.contaminated
    times, values, spans, held = [], [], [], []
    count = 0
    for start in range(0, s.times.size, chunk):
        stop = min(start + chunk, s.times.size)
        due = ~sent & (triggers + delays <= s.times[stop - 1])
        g.add_triggers(triggers[due])
        sent |= due
        t, v, sp = g.process(s.times[start:stop], data[start:stop])
        times.append(t)
        values.append(v)
        spans += sp
        count += t.size
        held.append(stop - count)
    t, v, sp = g.flush()
    return np.concatenate([*times, t]), np.concatenate([*values, v]), spans + sp, held


def decimate(values: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    d = StreamingDecimator(sfreq, round(sfreq / FEATURE_RATE), np.ones(values.shape[1], dtype=bool))
    stamps = np.arange(values.shape[0]) / sfreq
    t1, v1 = d.process(stamps, values)
    t2, v2 = d.flush()
    return np.concatenate([t1, t2]), np.concatenate([v1, v2]).astype(np.float64)


def harmonic_power(t: np.ndarray, values: np.ndarray, f0: float, fmax: float = 100.0) -> float:
    """Summed power (least-squares amplitude squared) at ``f0`` and its harmonics up to ``fmax``."""
    total = 0.0
    for m in range(1, int(fmax // f0) + 1):
        phase = 2 * np.pi * m * f0 * t
        basis = np.column_stack([np.sin(phase), np.cos(phase)])
        coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
        total += float(np.sum(coef**2))
    return total


def merged(spans: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    for start, end, kind in spans:
        if out and out[-1][2] == kind and abs(out[-1][1] - start) < 1e-9:
            out[-1] = (out[-1][0], end, kind)
        else:
            out.append((start, end, kind))
    return out


def scores(s: Surrogate, corrected: np.ndarray, first: int, last: int) -> tuple[float, np.ndarray]:
    """Slice-harmonic reduction (dB) after decimation to 250 Hz, and the per-channel correlation with
    the clean EEG (both high-passed at 0.5 Hz as the windower does), over samples ``first .. last``."""
    eeg = slice(0, s.clean.shape[1] - 1)
    t, before = decimate((s.contaminated - s.clean)[:, eeg], s.sfreq)
    _, after = decimate((corrected - s.clean)[:, eeg], s.sfreq)
    _, clean = decimate(s.clean[:, eeg], s.sfreq)
    _, out = decimate(corrected[:, eeg], s.sfreq)
    k0, k1 = np.searchsorted(t, [first / s.sfreq, last / s.sfreq])
    f0 = s.slices / (s.onsets[1] - s.onsets[0])
    reduction = 10 * np.log10(
        harmonic_power(t[k0:k1], before[k0:k1], f0) / harmonic_power(t[k0:k1], after[k0:k1], f0)
    )
    sos = signal.butter(2, 0.5, btype="highpass", fs=FEATURE_RATE, output="sos")
    clean_hp, out_hp = signal.sosfiltfilt(sos, clean, axis=0), signal.sosfiltfilt(sos, out, axis=0)
    r = np.array([np.corrcoef(out_hp[k0:k1, c], clean_hp[k0:k1, c])[0, 1] for c in range(clean.shape[1])])
    return float(reduction), r


@pytest.mark.parametrize("clock_ppm", [0.0, 20.0], ids=["sync-box", "clock-20ppm"])
def test_removes_the_gradient_artefact_40_db_and_keeps_the_eeg(clock_ppm):
    s = make_surrogate(clock_ppm=clock_ppm, seconds=80.0)
    g = corrector(s)
    times, out, spans, _ = feed(g, s, chunk=5000)
    np.testing.assert_array_equal(times, s.times)  # every sample once, in order
    np.testing.assert_array_equal(out[:, -1], s.clean[:, -1])  # the misc channel untouched
    ready = s.trigger_samples[g.min_template_volumes]
    # Only the volumes before the template was ready are flagged.
    assert spans and all(kind == UNCORRECTED for _, _, kind in spans)
    assert max(end for _, end, _ in spans) <= s.times[ready] + 1e-9
    assert min(start for start, _, _ in spans) >= s.triggers[0] - 1e-9
    # The artefact is measured from the first corrected volume on; the EEG once the template holds
    # all its volumes (a template of N volumes carries 1/N of the EEG's power).
    first, full, last = s.trigger_samples[[g.min_template_volumes + 1, g.template_volumes + 1, -1]]
    reduction, _ = scores(s, out, first, last)
    _, r = scores(s, out, full, last)
    offline = offline_aas(s.contaminated, s.sfreq, s.trigger_samples, 20)
    offline_reduction, _ = scores(s, offline, first, last)
    _, offline_r = scores(s, offline, full, last)
    print(
        f"{clock_ppm} ppm: online {reduction:.1f} dB, median r {np.median(r):.3f}; "
        f"offline AAS {offline_reduction:.1f} dB, median r {np.median(offline_r):.3f}"
    )
    assert reduction >= 40.0
    assert np.median(r) >= 0.95
    assert reduction >= offline_reduction - 3.0  # causal, yet not worse than the classic offline


def test_status_reports_the_template_the_alignment_and_the_residual():
    s = make_surrogate(clock_ppm=20.0, seconds=40.0)
    g = corrector(s)
    assert g.status()["template_ready"] is False
    g.add_triggers(s.triggers)
    g.process(s.times, s.contaminated)
    status = g.status()
    assert status["template_ready"] is True
    assert status["volumes_averaged"] == min(20, s.triggers.size)
    assert status["tr_estimate"] == pytest.approx(s.tr, rel=1e-4)
    assert status["triggers_inferred"] == 0
    assert status["residual_power_ratio"] < -30.0
    shifts = np.array(status["alignment"])
    # 20 ppm moves the true onset by 0.21 samples per volume against the trigger's sample.
    # (a step of a whole sample when the trigger moves on to the next sample)
    assert shifts.size == 8
    np.testing.assert_allclose(np.mod(np.diff(shifts), 1.0), 0.21, atol=0.02)
    assert 0.0 < g.latency <= 0.1
    assert g.max_hold == pytest.approx(g.latency + g.trigger_wait)


def test_a_sync_box_needs_no_shift():
    s = make_surrogate(clock_ppm=0.0, seconds=30.0)
    g = corrector(s)
    g.add_triggers(s.triggers)
    g.process(s.times, s.contaminated)
    assert np.all(np.abs(g.status()["alignment"]) < 0.02)


def test_output_is_identical_for_any_chunking():
    s = make_surrogate(sfreq=2000.0, seconds=30.0, n_eeg=3, clock_ppm=20.0, seed=3)
    triggers = np.delete(s.triggers, 8)  # one inferred volume on the way
    results = []
    # Triggers known in advance, or arriving as the samples pass them (within trigger_wait).
    for chunk, upfront in (
        (1, True),
        (37, True),
        (2000, True),
        (s.times.size, True),
        (37, False),
        (2000, False),
    ):
        g = corrector(s, tr=None, slices_per_volume=None, template_volumes=6, min_template_volumes=3)
        times, out, spans, _ = feed(g, s, chunk, triggers=triggers, upfront=upfront)
        results.append((times, out, merged(spans)))
    for times, out, spans in results[1:]:
        np.testing.assert_array_equal(times, results[0][0])
        np.testing.assert_array_equal(out, results[0][1])
        assert spans == results[0][2]
    assert any(kind == TRIGGER_INFERRED for _, _, kind in results[0][2])
    # The repetition time measured from the triggers, segments of fixed blocks: corrected all the same.
    assert all(volume_error(s, results[0][1], k) < 0.03 for k in range(9, s.triggers.size - 1))


def volume_error(s: Surrogate, out: np.ndarray, k: int) -> float:
    """RMS of (corrected - clean) over volume ``k`` relative to the artefact's RMS there."""
    a, b = s.trigger_samples[k], s.trigger_samples[k + 1]
    error = out[a:b, :-1] - s.clean[a:b, :-1]
    return float(np.sqrt(np.mean(error**2) / np.mean(s.artefact[a:b, :-1] ** 2)))


def test_a_dropped_trigger_is_inferred_corrected_and_flagged():
    s = make_surrogate(clock_ppm=20.0, seconds=40.0, seed=1)
    k = 10
    g = corrector(s)
    inferred_count = []
    g.process = _counting(g, inferred_count)  # type: ignore[method-assign]
    _, out, spans, _ = feed(g, s, chunk=500, triggers=np.delete(s.triggers, k))
    inferred = [span for span in merged(spans) if span[2] == TRIGGER_INFERRED]
    assert len(inferred) == 1 and max(inferred_count) == 1
    start, end, _ = inferred[0]
    assert abs(start - s.triggers[k]) <= 1.5 / s.sfreq
    assert end == pytest.approx(s.triggers[k + 1], abs=1.5 / s.sfreq)
    assert volume_error(s, out, k) < 0.02


def _counting(g: GradientCorrector, seen: list[int]):
    """Wrap ``g.process`` to record the inferred-trigger count after every call."""
    process = g.process

    def wrapped(times, data):
        result = process(times, data)
        seen.append(g.status()["triggers_inferred"])
        return result

    return wrapped


def test_a_late_trigger_leaves_a_flagged_stretch_and_correction_resumes():
    s = make_surrogate(clock_ppm=20.0, seconds=40.0, seed=2)
    k = 10
    delays = np.zeros(s.triggers.size)
    delays[k] = 1.0  # beyond trigger_wait (0.5 s)
    g = corrector(s, infer_missing_triggers=False)
    _, out, spans, _ = feed(g, s, chunk=250, delays=delays)
    late = [span for span in merged(spans) if span[0] > s.triggers[g.min_template_volumes + 1]]
    assert len(late) == 1 and late[0][2] == UNCORRECTED
    start, end, _ = late[0]
    assert abs(start - s.triggers[k]) <= 1.5 / s.sfreq
    # Flagged from the volume's start until the trigger came (1 s late, minus trigger_wait held).
    assert s.triggers[k] + 0.45 <= end <= s.triggers[k] + 1.0 + 1e-6
    assert g.status()["triggers_late"] == 0  # flush resets the state
    assert volume_error(s, out, k + 1) < 0.02 and volume_error(s, out, k + 2) < 0.02


def test_with_inference_a_late_trigger_is_only_a_confirmation():
    s = make_surrogate(clock_ppm=20.0, seconds=30.0, seed=2)
    delays = np.zeros(s.triggers.size)
    delays[9] = 1.0
    g = corrector(s)
    _, _, spans, _ = feed(g, s, chunk=250, delays=delays)
    late = [span for span in merged(spans) if span[0] > s.triggers[g.min_template_volumes + 1]]
    assert [kind for _, _, kind in late] == [TRIGGER_INFERRED]
    assert late[0][0] == pytest.approx(s.triggers[9], abs=1.5 / s.sfreq)


def test_before_the_first_trigger_and_after_the_scanner_stops_samples_pass_unflagged():
    s = make_surrogate(seconds=40.0, scan_start=3.0, scan_stop=25.0, clock_ppm=20.0)
    g = corrector(s)
    chunk = 100
    times, out, spans, held = feed(g, s, chunk=chunk)
    np.testing.assert_array_equal(times, s.times)
    first, end = s.trigger_samples[0], s.trigger_samples[-1] + round(s.tr * s.sfreq)
    np.testing.assert_array_equal(out[:first], s.contaminated[:first])
    np.testing.assert_array_equal(out[end + 5 :], s.contaminated[end + 5 :])
    assert all(start >= s.triggers[0] - 1e-9 and stop <= s.times[end] + 1e-9 for start, stop, _ in spans)
    assert all(kind == UNCORRECTED for _, _, kind in spans)
    assert max(held) <= g.max_hold * s.sfreq + chunk


def test_nan_input_stays_in_its_samples_and_keeps_out_of_the_template():
    s = make_surrogate(seconds=40.0, clock_ppm=20.0, seed=4)
    _, reference, _, _ = feed(corrector(s), s, chunk=1000)
    a = s.trigger_samples[8] + 1000
    s.clean[a : a + 50, 2] = np.nan
    _, out, _, _ = feed(corrector(s), s, chunk=1000)
    assert np.isnan(out[a : a + 50, 2]).all()
    assert np.isfinite(np.delete(out, np.s_[a : a + 50], axis=0)).all()
    assert np.isfinite(out[a : a + 50, [0, 1, 3]]).all()
    for k in (12, 13):  # the volume with NaN left out of the template: later volumes as good as without
        assert volume_error(s, out, k) < 1.2 * volume_error(s, reference, k) + 1e-3


def test_the_kept_sums_and_products_are_those_of_the_volumes_held():
    """The template's running mean and the residuals' products follow the ring through wraps and a clear."""
    rng = np.random.default_rng(5)
    means, products = _Ring(4, keep_total=True), _Ring(4, keep_gram=True)
    for step in range(23):
        if step == 13:  # a restart halfway through a turn of the ring
            means.clear()
            products.clear()
        item = rng.standard_normal((3, 50)).astype(np.float32) * (1 + step)
        means.push(item)
        products.push(item)
        held = products.items()
        assert len(means) == len(products) == min(4, step + 1 if step < 13 else step - 12)
        np.testing.assert_allclose(means.mean(), means.items().astype(np.float64).mean(axis=0), rtol=1e-10)
        assert products.gram is not None
        expected = np.einsum("vcn,wcn->cvw", held, held)
        np.testing.assert_allclose(products.gram[:, : len(held), : len(held)], expected, rtol=1e-10)


def test_refuses_bad_arguments_with_a_clear_message():
    with pytest.raises(ValueError, match="one flag per channel"):
        GradientCorrector(5000.0, 3, np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match="repetition time"):
        GradientCorrector(5000.0, 2, np.ones(2, dtype=bool), tr=-1.0)
    with pytest.raises(ValueError, match="min_template_volumes"):
        GradientCorrector(5000.0, 2, np.ones(2, dtype=bool), template_volumes=3, min_template_volumes=5)
    g = GradientCorrector(5000.0, 2, np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        g.process(np.arange(4.0), np.zeros((4, 3)))


def test_a_new_sequence_with_another_repetition_time_restarts_the_template():
    first = make_surrogate(seconds=20.0, clock_ppm=20.0, seed=5)
    second = make_surrogate(seconds=30.0, tr=1.4, slices=28, clock_ppm=20.0, seed=6)
    offset = first.times[-1] + 1 / first.sfreq - second.times[0]
    both = Surrogate(
        np.concatenate([first.times, second.times + offset]),
        np.concatenate([first.clean, second.clean]),
        np.concatenate([first.artefact, second.artefact]),
        np.concatenate([first.triggers, second.triggers + offset]),
        np.concatenate([first.onsets, second.onsets + offset]),
        first.sfreq,
        second.tr,
        second.slices,
    )
    g = corrector(both, tr=None, slices_per_volume=None)
    seen: list[int] = []
    process = g.process

    def watched(times, data):
        result = process(times, data)
        seen.append(g.status()["volumes_averaged"])
        return result

    g.process = watched  # type: ignore[method-assign]
    _, out, spans, _ = feed(g, both, chunk=1000)
    assert max(seen[: first.times.size // 1000]) == first.triggers.size - 1
    assert min(seen[first.times.size // 1000 :]) < g.min_template_volumes  # started again
    # The new run's first volume is unlike the template (uncorrected, flagged); the template restarts
    # at the second (its interval shows the new TR) and is ready min_template_volumes later.
    start = first.triggers.size
    ready = both.triggers[start + 1 + g.min_template_volumes]
    assert [span for span in merged(spans) if span[1] > ready + 1e-6] == []
    assert any(abs(span[0] - both.triggers[start]) < 1e-6 for span in merged(spans))
    for k in range(start + g.min_template_volumes + 2, both.triggers.size - 1):
        assert volume_error(both, out, k) < 0.03
