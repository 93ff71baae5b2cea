"""TensorFlow's start-up chatter is silenced; warnings, errors and the project's own output are not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from model.keras_env import is_startup_chatter
from tests.cli import PROJECT

# Lines TensorFlow 2.21 and LiteRT print on import, as captured on this project's machines.
CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796313428.489092   10024 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    "I0000 00:00:1796313428.532236   10024 cpu_feature_guard.cc:227] This TensorFlow binary is optimized "
    "to use available CPU instructions in performance-critical operations.\n",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.\n",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
)
NOT_CHATTER = (
    "W0000 00:00:1796313428.489092   10024 gpu_device.cc:2341] Cannot dlopen some GPU libraries.\n",
    "E0000 00:00:1796313428.489092   10024 cuda_blas.cc:1407] Unable to register cuBLAS factory\n",
    "F0000 00:00:1796313428.489092   10024 logging.cc:43] Check failed: ok\n",
    "/work/model/bundle.py:12: UserWarning: the bundle was trained on synthetic data\n",
    "Traceback (most recent call last):\n",
    "error: --speed must be positive\n",
)


def test_only_informational_start_up_lines_count_as_chatter():
    assert all(is_startup_chatter(line) for line in CHATTER)
    assert not any(is_startup_chatter(line) for line in NOT_CHATTER)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT,
    )


def test_the_filter_drops_chatter_written_to_descriptor_2_and_writes_back_the_rest():
    # Native libraries write to descriptor 2 directly, not through sys.stderr: so does this test.
    result = run_python(
        f"""
        import os, sys
        from model.keras_env import native_startup_chatter_filtered
        with native_startup_chatter_filtered():
            for line in {CHATTER + NOT_CHATTER!r}:
                os.write(2, line.encode())
            print("python-level warning", file=sys.stderr)
        print("after", file=sys.stderr)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines(keepends=True) == [*NOT_CHATTER, "python-level warning\n", "after\n"]


def test_loading_and_running_the_shipped_model_prints_only_the_projects_own_warnings():
    result = run_python(
        """
        import warnings
        import numpy as np
        from model.bundle import load_bundle
        from model.inference import Predictor
        folder = "model/default_bundle"
        bundle = load_bundle(folder)
        features = bundle.scaler.mean
        for predictor in (Predictor(bundle), Predictor(folder, backend="litert")):
            predictor.predict(features)
        warnings.warn("the project's own warning")
        print("predicted")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "predicted\n"
    assert "UserWarning: the project's own warning" in result.stderr
    for word in ("oneDNN", "absl", "cpu_feature_guard", "XNNPACK"):
        assert word not in result.stderr, result.stderr
