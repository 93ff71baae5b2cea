"""Model-ready rows of a feature table, and fitting one network on some of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from model.dataset import context_sequences, feature_matrix, run_identity, trainable_rows
from model.epochs import realign_labels, window_epochs
from model.labels import label_names, make_labels

if TYPE_CHECKING:
    from model.training import TrainConfig


@dataclass
class Prepared:
    """Model-ready rows of a feature table: the trainable ones, with their labels and epochs.

    ``sequences(K)`` gives the causal context sequences of the trainable rows for any K (windows
    that are not trainable still serve as context, as they do live).
    """

    table: pd.DataFrame
    current: np.ndarray  # (n, 11), the current window, unscaled
    y: np.ndarray
    subjects: np.ndarray
    epochs: np.ndarray  # epoch id of each row, -1 when none
    epoch_onsets: np.ndarray  # onset of each row's epoch (s), NaN when none
    epoch_source: str | None
    names: tuple[str, ...]
    all_features: np.ndarray  # (n_table, 11): every row of the table, for the context
    runs: np.ndarray  # run identity of every row of the table
    keep: np.ndarray  # trainable rows of the table
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def sequences(self, context: int) -> np.ndarray:
        """Unscaled sequences ``(n, context, 11)`` of the trainable rows."""
        if context not in self._cache:
            self._cache[context] = context_sequences(self.all_features, self.runs, context)[self.keep]
        return self._cache[context]


def prepare(table: pd.DataFrame, config: TrainConfig) -> Prepared:
    """Labels, epochs and subjects of the trainable rows of a feature table (labels of ``config``).

    A window's label is the stage of the scored epoch holding the majority of its EEG: the table's
    own ``stage`` when it has ``epoch_start``; otherwise realigned to the window's midpoint epoch
    (:func:`model.epochs.realign_labels`).
    """
    labels = make_labels(table, config.labels)
    epochs = window_epochs(table)
    if epochs.source == "window midpoint":
        labels = realign_labels(table, labels)
    features = feature_matrix(table)
    keep = trainable_rows(table, labels)
    if keep.sum() == 0:
        raise ValueError(f"no row of the feature table has a '{config.labels}' label and finite features")
    return Prepared(
        table=table[keep].reset_index(drop=True),
        current=features[keep],
        y=labels[keep],
        subjects=table["subject"].to_numpy()[keep],
        epochs=epochs.ids[keep],
        epoch_onsets=epochs.onsets[keep],
        epoch_source=epochs.source,
        names=label_names(config.labels),
        all_features=features,
        runs=run_identity(table),
        keep=keep,
    )


class _EpochBar:
    """A tqdm bar over epochs, as a Keras callback."""

    def __init__(self, description: str, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        from model.keras_env import import_keras

        keras = import_keras()
        bar = tqdm(total=total, desc=description, unit="epoch", disable=not enabled, leave=False)
        base: Any = keras.callbacks.Callback

        class Callback(base):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                bar.update(1)
                if logs:
                    bar.set_postfix(loss=f"{logs.get('loss', 0):.3f}", val=f"{logs.get('val_loss', 0):.3f}")

            def on_train_end(self, logs: dict[str, float] | None = None) -> None:
                bar.close()

        self.callback = Callback()


def fit_network(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    branches: str = "both",
    progress: str | None = None,
    epochs: int | None = None,
) -> Any:
    """Train one network with class weights and early stopping; return it (best weights).

    The context K is the sequences' length (``x_train.shape[1]``); ``epochs`` overrides
    ``config.epochs``.
    """
    from model.architecture import build_fusion_model
    from model.keras_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(config.seed)
    epochs = config.epochs if epochs is None else epochs
    counts = np.bincount(y_train, minlength=n_classes)
    weights = {k: (y_train.size / (n_classes * counts[k]) if counts[k] else 0.0) for k in range(n_classes)}
    network = build_fusion_model(
        int(x_train.shape[1]), n_classes, branches=branches,
        fmri_dropout=config.fmri_dropout if branches == "both" else 0.0, seed=config.seed,
    )  # fmt: skip
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    ]
    if progress:
        callbacks.append(_EpochBar(progress, epochs, enabled=True).callback)
    network.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=config.batch_size,
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
        shuffle=True,
    )
    return network


def split_validation(subjects: np.ndarray, train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve validation subjects out of a training mask (all of them if only one subject)."""
    train_subjects = np.random.default_rng(seed).permutation(np.unique(subjects[train]))
    if train_subjects.size < 2:
        return train, train
    n_val = max(1, round(0.2 * train_subjects.size))
    val = train & np.isin(subjects, train_subjects[:n_val])
    return train & ~val, val
