"""Bottom layer: the types, constants and LSL stream layouts every other package shares."""
