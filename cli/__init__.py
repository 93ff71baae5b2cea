"""Command-line sub-commands of run_stream.py, one module each."""
