"""The 11 features, in the order every table, model and message uses."""

from __future__ import annotations

EEG_FEATURES: tuple[str, ...] = (
    "eeg_delta_power",
    "eeg_theta_power",
    "eeg_alpha_power",
    "eeg_beta_power",
    "eeg_gamma_power",
    "eeg_spectral_entropy",
    "eeg_mean_coherence",
)
FMRI_FEATURES: tuple[str, ...] = ("bold_mean", "bold_variance", "alff_mean", "alff_variance")
FEATURE_NAMES: tuple[str, ...] = EEG_FEATURES + FMRI_FEATURES
BAND_NAMES: tuple[str, ...] = ("delta", "theta", "alpha", "beta", "gamma")
