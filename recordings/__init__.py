"""Recorded sessions: the ds003768 layout, expert scoring, montage and fMRI region means."""
