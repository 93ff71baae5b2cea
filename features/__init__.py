"""The 11 window features (EEG band powers, spectral entropy, coherence; fMRI metrics)."""
