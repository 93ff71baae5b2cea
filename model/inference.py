"""Inference paths: live (one window at a time, with causal context) and batched.

- :class:`Predictor` with ``backend="tf-function"``: the bundle's Keras model
  wrapped in a compiled ``tf.function`` with a fixed (1, K, 11) signature (XLA
  when it compiles), sub-millisecond per call where ``model.predict`` takes tens
  of milliseconds.
- :class:`Predictor` with ``backend="litert"``: the bundle exported to LiteRT
  (TFLite) and run by ``ai-edge-litert``, without TensorFlow. The export
  converts a *frozen batch-1 concrete function*; converting the Keras model
  object directly can silently give wrong numbers for recurrent layers.
- :meth:`model.bundle.ModelBundle.predict_sequences`: batched, for
  as-fast-as-possible replay and evaluation.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from features.names import FEATURE_NAMES
from model.dataset import FMRI_COLUMNS, MODEL_INPUTS, Scaler

if TYPE_CHECKING:
    import keras

    from model.bundle import ModelBundle

# The model as one call: a (1, K, 12) batch (scaled features and fMRI-present indicator) to the
# probabilities of the last window.
ModelCall = Callable[[np.ndarray], np.ndarray]

BACKENDS = ("tf-function", "litert")  # how a Predictor can run the model

LITERT_FILE = "model.tflite"


def export_litert(bundle: ModelBundle, path: str | Path | None = None) -> Path:
    """Write the bundle's model as a LiteRT flatbuffer (``model.tflite`` in the bundle by default)."""
    from model.keras_env import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = bundle.model
    spec = tf.TensorSpec((1, bundle.context, MODEL_INPUTS), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if path is None:
        if bundle.path is None:
            raise ValueError("the bundle has no folder (save it first) and no path was given")
        path = bundle.path / LITERT_FILE
    path = Path(path)
    path.write_bytes(converter.convert())
    return path


class Predictor:
    """Class probabilities of one window at a time, keeping the last K windows as context.

    Parameters
    ----------
    bundle_or_folder : ModelBundle | path-like
        A loaded bundle (``tf-function``) or a bundle folder (either backend;
        ``litert`` never imports TensorFlow).
    backend : str
        ``"tf-function"`` or ``"litert"``.
    """

    def __init__(self, bundle_or_folder: ModelBundle | str | Path, backend: str = "tf-function") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'tf-function' or 'litert', got {backend!r}")
        self.backend = backend
        if backend == "litert":
            from model.bundle import META_FILE, ModelBundle, check_format

            if isinstance(bundle_or_folder, ModelBundle):
                if bundle_or_folder.path is None:
                    raise ValueError("backend 'litert' reads a saved bundle's folder; this bundle has none")
                folder = bundle_or_folder.path
            else:
                folder = Path(bundle_or_folder)
            meta = json.loads((folder / META_FILE).read_text())
            check_format(meta, folder / META_FILE)
            self.context = int(meta["context"])
            self.label_names: tuple[str, ...] = tuple(meta["label_names"])
            self.scaler = Scaler.from_dict(meta["scaler"])
            if tuple(meta["feature_names"]) != FEATURE_NAMES:
                raise ValueError(
                    f"{folder}: bundle features {meta['feature_names']} differ from {list(FEATURE_NAMES)}"
                )
            self._call: ModelCall = self._litert(folder / LITERT_FILE)
        else:
            from model.bundle import ModelBundle, load_bundle

            bundle = (
                bundle_or_folder
                if isinstance(bundle_or_folder, ModelBundle)
                else load_bundle(bundle_or_folder)
            )
            self.context = bundle.context
            self.label_names = bundle.label_names
            self.scaler = bundle.scaler
            self._call = self._tf_function(bundle.model)
        self._history: deque[np.ndarray] = deque(maxlen=self.context)

    def reset(self) -> None:
        """Forget the context (a new session, or a restarted stream)."""
        self._history.clear()

    def predict(self, features: np.ndarray, fmri_present: bool | None = None) -> np.ndarray:
        """Probabilities for the window whose 11 features are given (NaN allowed: scaled to 0).

        Any values give finite probabilities summing to 1: NaN and infinities count as missing (the
        training mean), huge finite values are clipped (:meth:`model.dataset.Scaler.transform`).
        A window whose four fMRI features are not all finite, or for which ``fmri_present`` is
        False, is predicted without fMRI (the model's fMRI-present indicator is 0 for it; the
        windows of its context keep theirs).

        Parameters
        ----------
        features : np.ndarray, shape (11,)
            The window's features, unscaled.
        fmri_present : bool | None
            False: leave this window's fMRI features out (e.g. stale fMRI); None or True: use
            them when they are all finite.

        Returns
        -------
        probabilities : np.ndarray, shape (n_classes,)

        Raises
        ------
        ValueError
            If ``features`` is not a vector of the 11 features (the context is left unchanged).
        """
        try:
            vector = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"expected the {len(FEATURE_NAMES)} features as numbers: {err}") from None
        if vector.shape != (len(FEATURE_NAMES),):
            raise ValueError(
                f"expected the {len(FEATURE_NAMES)} features {', '.join(FEATURE_NAMES)}; "
                f"got an array of shape {vector.shape}"
            )
        if fmri_present is False:
            vector = vector.copy()
            vector[FMRI_COLUMNS] = np.nan
        self._history.append(vector)
        history = list(self._history)
        history = [history[0]] * (self.context - len(history)) + history
        batch = self.scaler.transform(np.stack(history))[np.newaxis]
        return self._call(batch)

    def _tf_function(self, keras_model: keras.Model) -> ModelCall:
        from model.keras_env import import_tensorflow

        tf = import_tensorflow()

        spec = tf.TensorSpec((1, self.context, MODEL_INPUTS), tf.float32)
        probe = np.zeros((1, self.context, MODEL_INPUTS), np.float32)
        expected = np.asarray(keras_model(probe, training=False))
        for jit in (True, False):
            try:
                function = tf.function(
                    lambda x: keras_model(x, training=False), input_signature=[spec], jit_compile=jit
                )
                if np.allclose(function(probe).numpy(), expected, atol=1e-6):
                    break
            except Exception:  # XLA may not compile every layer on every machine: fall back
                continue
        self.jit_compiled = jit
        return lambda batch: function(batch).numpy()[0]

    def _litert(self, path: Path) -> ModelCall:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no LiteRT model in the bundle (export it with export_litert)")
        from model.keras_env import litert_interpreter

        interpreter = litert_interpreter(str(path))
        source = interpreter.get_input_details()[0]["index"]
        target = interpreter.get_output_details()[0]["index"]

        def call(batch: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(source, batch)
            interpreter.invoke()
            return interpreter.get_tensor(target)[0].copy()

        return call
