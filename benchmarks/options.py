"""Command-line options shared by the end-to-end benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.inference import BACKENDS

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
