"""The CNN+RNN fusion model (Keras).

Input: the 11 features of the current window and of the K-1 previous ones,
standardised, each followed by its fMRI-present indicator (1 when the window's four fMRI
features are usable, 0 when not: :meth:`model.dataset.Scaler.transform`), shape (K, 12). The 7 EEG
features go to an RNN branch (an LSTM
over the K windows: the EEG's dynamics across successive 30 s windows, as the
origin intended); the 4 fMRI features go to a CNN branch (causal 1-D
convolutions over the K windows, then global max pooling: the slow haemodynamic
features are smooth in time and local patterns suit a convolution). The two
branch embeddings are concatenated, passed through a dense layer and a softmax
over the classes. ``branches="eeg"`` or ``"fmri"`` keeps a single branch (the
baselines of the evaluation).

Missing fMRI: the fMRI branch sees its features multiplied by the indicator, and the indicator
itself (so it knows which windows had fMRI); the current window's indicator also joins the fusion
layer. In training, :class:`ModalityDropout` sets the indicator to 0 at random (whole sequences,
or the windows from a random point on or up to it: a stall starting or ending within the
context), so that one model predicts with and without fMRI (``docs/model.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model.dataset import FMRI_DROPOUT
from model.keras_env import import_keras

import_keras()  # TensorFlow's start-up chatter filtered, the TensorFlow backend chosen: then keras
import keras  # noqa: E402

if TYPE_CHECKING:
    import tensorflow as tf

N_EEG = 7
N_FMRI = 4
N_INPUTS = N_EEG + N_FMRI + 1
"""Per window: the 7 EEG features, the 4 fMRI features and the fMRI-present indicator."""


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


@keras.saving.register_keras_serializable(package="sleepstream")
class ModalityDropout(keras.layers.Layer):
    """In training, set the fMRI-present indicator (shape (batch, K, 1)) to 0 at random; else identity.

    Of the sequences a ``rate`` share lose fMRI: half of them in every window, a quarter from a
    random window on (a stall beginning), a quarter up to a random window (fMRI coming back).
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"ModalityDropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """The indicator, with some sequences' fMRI masked in training."""
        if not training or self.rate == 0:
            return inputs
        mask = inputs  # ("mask" would be taken for a Keras mask as the argument's name)
        ops = keras.ops
        batch, context = ops.shape(mask)[0], ops.shape(mask)[1]
        draw = keras.random.uniform((batch, 1, 1), seed=self.seed_generator)
        cut = keras.random.uniform((batch, 1, 1), seed=self.seed_generator) * ops.cast(context, "float32")
        position = ops.reshape(ops.cast(ops.arange(context), "float32"), (1, -1, 1))
        rate = self.rate
        drop = (
            (draw < 0.5 * rate)
            | ((draw >= 0.5 * rate) & (draw < 0.75 * rate) & (position >= cut))
            | ((draw >= 0.75 * rate) & (draw < rate) & (position < cut))
        )
        return mask * (1.0 - ops.cast(drop, mask.dtype))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Unchanged."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="sleepstream")
class MaskedFmri(keras.layers.Layer):
    """``[fmri (batch, K, 4), indicator (batch, K, 1)]`` to the fMRI features times the indicator, and it."""

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        """Concatenate the masked features and the indicator."""
        fmri, mask = inputs
        return keras.ops.concatenate([fmri * mask, mask], axis=-1)

    def compute_output_shape(self, input_shape: list[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        """The fMRI features and one more."""
        fmri, _ = input_shape
        return (*fmri[:-1], None if fmri[-1] is None else fmri[-1] + 1)


@keras.saving.register_keras_serializable(package="sleepstream")
class LastWindow(keras.layers.Layer):
    """The last window of a sequence: (batch, K, n) to (batch, n)."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        """Take the last step."""
        return inputs[:, -1, :]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Without the time axis."""
        return (input_shape[0], input_shape[-1])


def build_fusion_model(
    context: int,
    n_classes: int,
    *,
    branches: str = "both",
    cnn_filters: int = 16,
    rnn_units: int = 16,
    dense_units: int = 32,
    dropout: float = 0.2,
    fmri_dropout: float | None = None,
    seed: int | None = None,
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
    fmri_dropout : float | None
        Modality dropout: the share of training sequences trained without fMRI
        (:class:`ModalityDropout`); None: :data:`FMRI_DROPOUT` for the fusion model, 0 for a
        single branch.
    seed : int | None
        Seed of the modality dropout's draws.

    Returns
    -------
    model : keras.Model
    """
    if branches not in ("both", "eeg", "fmri"):
        raise ValueError(f"branches must be 'both', 'eeg' or 'fmri', got {branches!r}")
    if fmri_dropout is None:
        fmri_dropout = FMRI_DROPOUT if branches == "both" else 0.0
    inputs = keras.Input(shape=(context, N_INPUTS), name="features")
    embeddings = []
    if branches in ("both", "eeg"):
        eeg = FeatureSlice(0, N_EEG, name="eeg_features")(inputs)
        embeddings.append(keras.layers.LSTM(rnn_units, name="eeg_rnn")(eeg))
    if branches in ("both", "fmri"):
        mask = FeatureSlice(N_EEG + N_FMRI, N_INPUTS, name="fmri_present")(inputs)
        mask = ModalityDropout(fmri_dropout, seed=seed, name="modality_dropout")(mask)
        fmri = MaskedFmri(name="fmri_masked")(
            [FeatureSlice(N_EEG, N_EEG + N_FMRI, name="fmri_features")(inputs), mask]
        )
        kernel = min(3, context)
        x = keras.layers.Conv1D(cnn_filters, kernel, padding="causal", activation="relu", name="fmri_cnn_1")(
            fmri
        )
        x = keras.layers.Conv1D(cnn_filters, kernel, padding="causal", activation="relu", name="fmri_cnn_2")(
            x
        )
        embeddings.append(keras.layers.GlobalMaxPooling1D(name="fmri_pool")(x))
        embeddings.append(LastWindow(name="fmri_present_now")(mask))
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
