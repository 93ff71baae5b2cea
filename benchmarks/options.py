"""Command-line options shared by the end-to-end benchmarks, and the settings they give."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.inference import BACKENDS
from pipeline.settings import ModelSettings, RecordingSettings, Settings

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "model" / "default_bundle"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--bundle`` and ``--backend``, defaulting to what the demo and ``live`` run."""
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="model bundle folder")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="litert",
        help="Predictor backend (default litert, as the demo and live run it)",
    )


def benchmark_settings(args: argparse.Namespace, record_in: str | None) -> Settings:
    """The default settings with the model of ``--bundle`` and ``--backend``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`add_model_options`.
    record_in : str | None
        Folder of the session record (a temporary one); None records nothing.
    """
    return Settings(
        model=ModelSettings(bundle=args.bundle, backend=args.backend),
        recording=RecordingSettings(directory=record_in or "sessions", enabled=record_in is not None),
    )
