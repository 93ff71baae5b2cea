"""Scanner side: real-time fMRI export folder to an LSL stream of region means."""
