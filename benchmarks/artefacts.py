"""In-scanner artefact correction: speed on one core, the latency it adds, and how well it corrects.

32 channels (30 EEG, EOG, ECG) at 5 kHz, the raw rate of ds003768's MR amplifier: surrogate N2 EEG
recorded "in the scanner" by :mod:`simulators.scanner_artefacts` (35-slice EPI at TR 2.1 s, a
heartbeat with its ballistocardiogram), the clean EEG kept beside.

Speed (one thread: BLAS limited to one core before numpy loads): CPU seconds per second of signal,
fed in chunks of 50 ms, as an acquisition pulls them, for

- ours: the live chain (``stream.artefact_correction.ArtefactCorrection``: gradient template
  subtraction with sub-sample alignment and residual basis, decimation to 250 Hz, BCG subtraction);
- its gradient stage alone (``stream.gradient_correction.GradientCorrector``), and the decimation
  alone (which a 5-kHz stream goes through with or without correction);
- the straightforward reference: average artefact subtraction volume by volume, each template the
  plain mean of the last 20 volumes recomputed with ``numpy.mean`` when the volume starts (no
  alignment, no residual basis), then the same decimation.

Latency: how long each output sample was held (the time of the newest input sample when it came out
minus its own time; signal time, not wall time), and the chain's declared bound.

Quality (two minutes of signal, after 40 s of warm-up), with a sync box and with a 20-ppm clock
mismatch: gradient-artefact power left at the slice frequency and harmonics up to 100 Hz (dB below
the artefact's) and the per-channel correlation (0.5 Hz high-pass) with what a gradient correction
should leave (clean EEG + pulse artefact), for our gradient stage, the reference above and offline
average subtraction over the whole recording (a centred mean of 20 volumes,
``stream.gradient_correction.offline_aas``); then for the whole chain, the correlation with the
clean EEG and the band powers of 30-s windows against the clean ones; and the whole chain again on
``--subjects`` simulated subjects (seeds 0, 1, ...: their EEG, heartbeat and pulse artefacts differ).

Usage: python -m benchmarks.artefacts [--seconds 120] [--repeats 3] [--subjects 5]
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("LSLAPICFG", str(Path(__file__).resolve().parents[1] / "core" / "lsl_api.cfg"))
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one core: before numpy loads its BLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.results_file import add_results_option, recorded  # noqa: E402
from core.channels import VOLTAGE_TYPES  # noqa: E402
from pipeline.artefact_validation import (  # noqa: E402
    EEG_ROWS,
    SFREQ,
    band_powers,
    chunks,
    correct,
    correction_chain,
    decimated,
    harmonic_power,
    highpassed,
    in_scanner_recording,
    windows_through,
)
from recordings.montage import CHANNEL_TYPES  # noqa: E402
from simulators.scanner_artefacts import ScannerArtefactSettings  # noqa: E402
from stream.config import ArtefactConfig  # noqa: E402
from stream.decimation import StreamingDecimator  # noqa: E402
from stream.gradient_correction import GradientCorrector, offline_aas  # noqa: E402

CHUNK = 250  # samples at 5 kHz: 50 ms
WARM_UP = 40.0
WINDOWS_FROM = 30.0  # s: windows starting from here on are compared (the templates are full)
TEMPLATE_VOLUMES = 20
BANDS = ("delta", "theta", "alpha", "beta", "gamma")


def naive_aas(data: np.ndarray, triggers: np.ndarray, tr: float) -> np.ndarray:
    """Causal average subtraction: each volume minus the plain mean of the 20 volumes before it."""
    out = data.astype(np.float64).copy()
    length = round(tr * SFREQ)
    onsets = np.round(triggers * SFREQ).astype(int)
    voltage = np.array([kind in VOLTAGE_TYPES for kind in CHANNEL_TYPES])
    for k, onset in enumerate(onsets):
        if onset + length > data.shape[1] or k < 4:
            continue
        previous = [data[voltage, o : o + length] for o in onsets[max(0, k - TEMPLATE_VOLUMES) : k]]
        out[voltage, onset : onset + length] -= np.mean(previous, axis=0)
    return out


def timed_cpu(run) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def speed(recording, seconds: float, repeats: int) -> None:
    data, triggers = recording.data, recording.trigger_times
    voltage = np.array([kind in VOLTAGE_TYPES for kind in CHANNEL_TYPES])

    def feed(process, add_triggers):
        for times, samples, due in chunks(data, triggers, CHUNK):
            add_triggers(due)
            process(times, samples)

    def ours():
        chain = correction_chain()
        feed(chain.process, chain.add_triggers)
        chain.flush()

    def gradient_alone():
        corrector = GradientCorrector(SFREQ, data.shape[0], voltage, tr=2.1, slices_per_volume=35)
        feed(corrector.process, corrector.add_triggers)
        corrector.flush()

    def decimation_alone():
        decimator = StreamingDecimator(SFREQ, 20, voltage)
        for times, samples, _ in chunks(data, triggers, CHUNK):
            decimator.process(times, samples)
        decimator.flush()

    def reference():
        corrected = naive_aas(data, triggers, 2.1)
        decimator = StreamingDecimator(SFREQ, 20, voltage)
        for times, samples, _ in chunks(corrected, triggers, CHUNK):
            decimator.process(times, samples)
        decimator.flush()

    runs = (
        ("ours", ours),
        ("gradient_stage", gradient_alone),
        ("decimation_alone", decimation_alone),
        ("reference_naive_aas", reference),
    )
    for name, run in runs:
        cpu = [timed_cpu(run) for _ in range(repeats)]
        per_second = float(np.median(cpu)) / seconds
        print(
            f"artefacts.speed.{name}: {per_second * 1000:.1f} ms CPU per s of signal "
            f"({1 / per_second:.1f}x faster than real time; median of {repeats}, best "
            f"{1 / (min(cpu) / seconds):.1f}x)",
            flush=True,
        )


def latency(recording) -> None:
    chain = correction_chain()
    held: list[np.ndarray] = []
    for times, samples, due in chunks(recording.data, recording.trigger_times, CHUNK):
        chain.add_triggers(due)
        out_times, _, _ = chain.process(times, samples)
        held.append(times[-1] - out_times)
    waits = np.concatenate(held)
    print(
        f"artefacts.latency: samples held median {np.median(waits) * 1000:.0f} ms, 99th percentile "
        f"{np.percentile(waits, 99) * 1000:.0f} ms, max {waits.max() * 1000:.0f} ms (chunks of "
        f"{CHUNK / SFREQ * 1000:.0f} ms); declared: {chain.latency * 1000:.0f} ms "
        f"(gradient {chain.gradient.latency * 1000:.0f}, decimation "
        f"{chain.decimator.latency * 1000 if chain.decimator else 0:.0f}, BCG "
        f"{chain.bcg.latency * 1000 if chain.bcg else 0:.0f})",
        flush=True,
    )


def quality(label: str, settings: ScannerArtefactSettings, seconds: float) -> None:
    recording = in_scanner_recording(seconds, settings)
    out = correct(recording, correction_chain())
    keep = out.times > WARM_UP
    gradient_power = harmonic_power(out.gradient[keep][:, EEG_ROWS], 250.0)
    _, with_pulse = decimated(recording.clean + recording.bcg)  # what a gradient correction should leave
    onsets = np.round(recording.trigger_times * SFREQ).astype(int)
    gradient_only = {
        "ours_gradient_stage": correct(
            recording, correction_chain(ArtefactConfig(correction="on", bcg=False))
        ).corrected,
        "reference_naive_aas": decimated(naive_aas(recording.data, recording.trigger_times, 2.1))[1],
        "offline_aas": decimated(offline_aas(recording.data.T, SFREQ, onsets, TEMPLATE_VOLUMES).T)[1],
        "uncorrected": out.contaminated,
    }
    for name, values in gradient_only.items():
        print(
            f"artefacts.quality.{label}.gradient.{name}: "
            + measures(values, with_pulse, out.clean, keep, gradient_power, "clean EEG + pulse artefact"),
            flush=True,
        )
    line = f"artefacts.quality.{label}.chain.ours: " + measures(
        out.corrected, out.clean, out.clean, keep, gradient_power, "clean EEG"
    )
    print(line + "; " + band_errors(recording), flush=True)


def subjects(seconds: float, count: int) -> None:
    """The whole chain on ``count`` simulated subjects (seeds): their EEG and pulse artefacts differ."""
    for seed in range(count):
        recording = in_scanner_recording(seconds, ScannerArtefactSettings(), seed=seed)
        out = correct(recording, correction_chain())
        keep = out.times > WARM_UP
        gradient_power = harmonic_power(out.gradient[keep][:, EEG_ROWS], 250.0)
        line = f"artefacts.quality.subject_seed_{seed}.chain.ours: " + measures(
            out.corrected, out.clean, out.clean, keep, gradient_power, "clean EEG"
        )
        print(line + "; " + band_errors(recording), flush=True)


def band_errors(recording) -> str:
    """Band powers of the corrected windows against the clean ones: median and worst relative error."""
    bands = band_powers(windows_through(recording, recording.data, correction_chain()))
    clean_bands = band_powers(windows_through(recording, recording.clean, None))
    errors = np.array(
        [
            bands[end] / clean_bands[end] - 1
            for end in bands
            if end - 30.0 >= WINDOWS_FROM and end in clean_bands
        ]
    )
    worst = np.abs(errors).max(axis=0)
    median = np.median(np.abs(errors), axis=0)
    text = f"band power error over {len(errors)} windows starting after {WINDOWS_FROM:g} s, median / worst: "
    return text + ", ".join(
        f"{band} {m:.1%} / {w:.1%}" for band, m, w in zip(BANDS, median, worst, strict=True)
    )


def measures(
    values: np.ndarray,
    target: np.ndarray,
    clean: np.ndarray,
    keep: np.ndarray,
    gradient_power: float,
    what: str,
) -> str:
    """Correlation with ``target`` (0.5 Hz high-pass) and gradient power left at the slice harmonics."""
    ours = highpassed(values, 250.0)[keep]
    wanted = highpassed(target, 250.0)[keep]
    r = [np.corrcoef(ours[:, c], wanted[:, c])[0, 1] for c in EEG_ROWS]
    left = harmonic_power((values - target)[keep][:, EEG_ROWS], 250.0)
    return (
        f"correlation with {what} median {np.median(r):.3f} (min {np.min(r):.3f}); gradient at slice "
        f"harmonics {10 * np.log10(gradient_power / left):.1f} dB down"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="signal length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=5, help="simulated subjects for the whole chain")
    add_results_option(parser, "artefacts")
    args = parser.parse_args()
    with recorded("artefacts", args, packages=("numpy", "scipy")):
        recording = in_scanner_recording(args.seconds, ScannerArtefactSettings())
        speed(recording, args.seconds, args.repeats)
        latency(recording)
        quality("sync_box", ScannerArtefactSettings(), args.seconds)
        quality("clock_mismatch_20ppm", ScannerArtefactSettings(clock_mismatch_ppm=20.0), args.seconds)
        subjects(args.seconds, args.subjects)


if __name__ == "__main__":
    main()
