"""Import Keras (TensorFlow backend) quietly and deterministically, in one place."""

from __future__ import annotations

import os


def import_keras():
    """Return the ``keras`` module with TensorFlow's start-up chatter silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras
