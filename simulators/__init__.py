"""Replay side: ds003768-format session reading, surrogate sessions and LSL replay."""
