"""Windows to predictions: the pipeline, its factory, its sinks and offline extraction."""
