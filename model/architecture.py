"""The CNN+RNN fusion model (Keras).

Input: the 11 features of the current window and of the K-1 previous ones,
shape (K, 11), standardised. The 7 EEG features go to an RNN branch (an LSTM
over the K windows: the EEG's dynamics across successive 30 s windows, as the
origin intended); the 4 fMRI features go to a CNN branch (causal 1-D
convolutions over the K windows, then global max pooling: the slow haemodynamic
features are smooth in time and local patterns suit a convolution). The two
branch embeddings are concatenated, passed through a dense layer and a softmax
over the classes. ``branches="eeg"`` or ``"fmri"`` keeps a single branch (the
baselines of the evaluation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model.keras_env import import_keras

import_keras()  # TensorFlow's start-up chatter filtered, the TensorFlow backend chosen: then keras
import keras  # noqa: E402

if TYPE_CHECKING:
    import tensorflow as tf

N_EEG = 7
N_FMRI = 4


@keras.saving.register_keras_serializable(package="sleepstream")
class FeatureSlice(keras.layers.Layer):
    """Select features ``start:stop`` of the last axis."""

    def __init__(self, start: int, stop: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.stop = stop

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """Slice the last axis."""
        return inputs[..., self.start : self.stop]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Same shape with ``stop - start`` features."""
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def build_fusion_model(
    context: int,
    n_classes: int,
    *,
    branches: str = "both",
    cnn_filters: int = 16,
    rnn_units: int = 16,
    dense_units: int = 32,
    dropout: float = 0.2,
) -> keras.Model:
    """Build (and compile) the fusion model.

    Parameters
    ----------
    context : int
        K, windows seen per prediction (1 = the origin's single-vector model).
    n_classes : int
        Output classes.
    branches : str
        ``"both"`` (fusion), ``"eeg"`` (RNN only) or ``"fmri"`` (CNN only).
    cnn_filters, rnn_units, dense_units : int
        Layer widths.
    dropout : float
        Dropout before the output layer.

    Returns
    -------
    model : keras.Model
    """
    if branches not in ("both", "eeg", "fmri"):
        raise ValueError(f"branches must be 'both', 'eeg' or 'fmri', got {branches!r}")
    inputs = keras.Input(shape=(context, N_EEG + N_FMRI), name="features")
    embeddings = []
    if branches in ("both", "eeg"):
        eeg = FeatureSlice(0, N_EEG, name="eeg_features")(inputs)
        embeddings.append(keras.layers.LSTM(rnn_units, name="eeg_rnn")(eeg))
    if branches in ("both", "fmri"):
        fmri = FeatureSlice(N_EEG, N_EEG + N_FMRI, name="fmri_features")(inputs)
        kernel = min(3, context)
        x = keras.layers.Conv1D(cnn_filters, kernel, padding="causal", activation="relu", name="fmri_cnn_1")(
            fmri
        )
        x = keras.layers.Conv1D(cnn_filters, kernel, padding="causal", activation="relu", name="fmri_cnn_2")(
            x
        )
        embeddings.append(keras.layers.GlobalMaxPooling1D(name="fmri_pool")(x))
    x = keras.layers.Concatenate(name="fusion")(embeddings) if len(embeddings) > 1 else embeddings[0]
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"fusion_{branches}_k{context}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
