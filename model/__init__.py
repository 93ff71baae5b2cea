"""The CNN+RNN fusion classifier: training, evaluation, bundles and inference."""
