"""The scanner side's errors: fatal for the session, or about one volume file."""

from __future__ import annotations


class FmriSourceError(RuntimeError):
    """A condition under which nothing can be published (no TR, unusable mask, missing pydicom)."""


class IncompleteVolumeError(OSError):
    """A volume file holds fewer bytes than its header announces (still being written?)."""


class VolumeShapeError(ValueError):
    """A volume's grid differs from the session's region layout."""
