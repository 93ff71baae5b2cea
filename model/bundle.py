"""The model bundle: one folder that holds everything a prediction needs, validated on load.

Contents: ``model.keras`` (the Keras model), ``model.tflite`` (the same model
for LiteRT, see :mod:`model.inference`), ``bundle.json`` (format version,
feature names and order, label scheme and names, context K, the fitted scaler,
the feature contract (:mod:`model.contract`: feature definitions and settings, window
geometry, EEG rate and TR ranges, surrogate or real data), a summary of the training
data, the metrics, library versions). Loading refuses a bundle whose format, features,
context or Keras version do not match, with a message naming what differs.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.names import FEATURE_NAMES
from model.contract import ContractError, summary, unknown_contract, validate_contract
from model.dataset import MODEL_INPUTS, Scaler

if TYPE_CHECKING:
    import keras

BUNDLE_FORMAT = 3
"""Format 3: the model takes an fMRI-present indicator beside the 11 features (modality dropout);
format 2 added the feature contract. Older bundles are refused (retrain them)."""
MODEL_FILE = "model.keras"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"
"""The shipped bundle, trained on surrogate sessions (see its README)."""
META_FILE = "bundle.json"


class BundleError(ValueError):
    """A bundle is missing, damaged or does not match what the caller needs."""


def library_versions() -> dict[str, str]:
    """Versions that shape a bundle's numbers."""
    from model.keras_env import import_keras, import_tensorflow

    tf = import_tensorflow()
    keras = import_keras()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


@dataclass
class ModelBundle:
    """A loaded (or freshly trained) model with its metadata."""

    model: keras.Model
    scaler: Scaler
    labels: str
    label_names: tuple[str, ...]
    context: int
    feature_names: tuple[str, ...] = FEATURE_NAMES
    contract: dict[str, Any] = field(default_factory=unknown_contract)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def identity(self) -> dict[str, Any]:
        """What identifies this bundle in a session record."""
        return {
            "path": str(self.path) if self.path else None,
            "labels": self.labels,
            "label_names": list(self.label_names),
            "context": self.context,
            "created": self.training.get("created"),
            "format": BUNDLE_FORMAT,
            "contract": summary(self.contract),
        }

    def predict_sequences(self, sequences: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities of unscaled sequences of shape (n, K, 11) (batched path).

        A window whose fMRI features are not all finite is predicted without fMRI.
        """
        scaled = self.scaler.transform(sequences)
        return np.asarray(self.model.predict(scaled, batch_size=batch_size, verbose=0))

    def save(self, folder: str | Path) -> Path:
        """Write the bundle folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        self.versions = library_versions()
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "feature_names": list(self.feature_names),
            "labels": self.labels,
            "label_names": list(self.label_names),
            "context": self.context,
            "contract": self.contract,
            "scaler": self.scaler.to_dict(),
            "training": {"created": datetime.now(UTC).isoformat(timespec="seconds"), **self.training},
            "metrics": self.metrics,
            "versions": self.versions,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=float))
        self.training = meta["training"]
        self.path = folder
        from model.inference import export_litert

        export_litert(self)  # the lean runtime for acquisition PCs without TensorFlow
        return folder


def check_format(meta: dict[str, Any], meta_path: Path) -> None:
    """Refuse a ``bundle.json`` of another format, saying what to do.

    Raises
    ------
    BundleError
        For a format-1 or format-2 bundle (no feature contract, no fMRI-present input: retrain
        it) or any other format.
    """
    found = meta.get("format")
    if found == BUNDLE_FORMAT:
        return
    if found == 2:
        raise BundleError(
            f"{meta_path}: bundle format 2 predates predictions without fMRI (its model has no "
            f"fMRI-present input, format {BUNDLE_FORMAT}): retrain it with 'run_stream.py train'"
        )
    if found == 1:
        raise BundleError(
            f"{meta_path}: bundle format 1 does not record how its features were computed (feature "
            f"contract, format {BUNDLE_FORMAT}): retrain it with 'run_stream.py train' on a table written by "
            "'run_stream.py extract'"
        )
    raise BundleError(f"{meta_path}: bundle format {found!r}, this version reads format {BUNDLE_FORMAT}")


def load_bundle(
    folder: str | Path,
    *,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
    context: int | None = None,
) -> ModelBundle:
    """Load and validate a bundle.

    Parameters
    ----------
    folder : path-like
        The bundle folder.
    feature_names : tuple of str
        Features (and order) the caller will feed.
    context : int | None
        Context K the caller expects; any when None.

    Raises
    ------
    BundleError
        Naming the file and what does not match.
    """
    folder = Path(folder)
    meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
    for path in (meta_path, model_path):
        if not path.is_file():
            raise BundleError(f"{path}: missing from the model bundle {folder}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{meta_path}: invalid JSON ({err.msg}, line {err.lineno})") from None
    check_format(meta, meta_path)
    required = ("feature_names", "labels", "label_names", "context", "contract", "scaler", "versions")
    missing = [key for key in required if key not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing key(s) {missing}")
    try:
        contract = validate_contract(meta["contract"], str(meta_path))
    except ContractError as err:
        raise BundleError(str(err)) from None
    if tuple(meta["feature_names"]) != tuple(feature_names):
        raise BundleError(
            f"{meta_path}: the bundle was trained on features {meta['feature_names']}, "
            f"but the caller provides {list(feature_names)}"
        )
    if context is not None and meta["context"] != context:
        raise BundleError(
            f"{meta_path}: the bundle uses a context of K={meta['context']} windows, expected K={context}"
        )
    from model.keras_env import import_keras

    keras = import_keras()
    built_with = str(meta["versions"].get("keras", "?"))
    if built_with.split(".")[0] != keras.__version__.split(".")[0]:
        raise BundleError(
            f"{meta_path}: the bundle was saved with Keras {built_with}; Keras {keras.__version__} "
            "cannot be trusted to read it (retrain or install a matching Keras)"
        )
    import model.architecture  # noqa: F401  (registers the custom layer)

    try:
        keras_model = keras.saving.load_model(model_path, compile=False)
    except Exception as err:  # Keras raises several types for damaged archives
        raise BundleError(f"{model_path}: cannot be loaded as a Keras model ({err})") from None
    expected_shape = (None, meta["context"], MODEL_INPUTS)
    if tuple(keras_model.input_shape) != expected_shape:
        raise BundleError(
            f"{model_path}: model input shape {keras_model.input_shape} does not match context "
            f"{meta['context']} x ({len(feature_names)} features and the fMRI-present indicator)"
        )
    if keras_model.output_shape[-1] != len(meta["label_names"]):
        raise BundleError(
            f"{model_path}: {keras_model.output_shape[-1]} outputs for labels {meta['label_names']}"
        )
    scaler = Scaler.from_dict(meta["scaler"])
    if scaler.mean.size != len(feature_names):
        raise BundleError(
            f"{meta_path}: the scaler has {scaler.mean.size} features, expected {len(feature_names)}"
        )
    return ModelBundle(
        model=keras_model,
        scaler=scaler,
        labels=meta["labels"],
        label_names=tuple(meta["label_names"]),
        context=int(meta["context"]),
        feature_names=tuple(meta["feature_names"]),
        contract=contract,
        training=meta.get("training", {}),
        metrics=meta.get("metrics", {}),
        versions=meta["versions"],
        path=folder,
    )
