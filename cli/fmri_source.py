"""``run_stream.py fmri-source``: publish a scanner's real-time export folder as the fMRI LSL stream.

The work is done by :mod:`scanner.source`; this module only parses the
command line, applies it over the ``[fmri_source]`` section of the configuration,
prints progress and stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import existing_folder
from core.lsl_safety import use_project_lsl_config

if TYPE_CHECKING:
    from scanner.config import SourceConfig
    from scanner.outlet import FmriOutlet
    from scanner.source import PublishedVolume

DESCRIPTION = """\
The scanner side of live fMRI. Watches DIR, where the scanner's real-time export writes one volume
per file (NIfTI .nii/.nii.gz; DICOM .dcm/.ima if pydicom is installed), reduces every new volume to
its region means exactly as the simulators do, and publishes them as the LSL stream <prefix>-fMRI
(type fMRI; channel 0 the volume index, then one channel per region; nominal rate 1/TR), which
'run_stream.py live' consumes like a replayed session.

Files are taken in natural order of their names, each once, when their size has been stable for
--settle seconds or the next file has appeared. The region layout (brain mask, regions) is fixed by
--mask/--atlas or by the first volume and never changes; a volume on another grid is skipped with a
message. Each sample is stamped with the LSL clock when its file was detected, minus --delay (the
export latency from acquisition to the file's appearance).

Every option but --watch defaults to the [fmri_source] section of the configuration file
('run_stream.py --config FILE fmri-source ...'; 'run_stream.py config' prints it); flags override it."""


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def _non_negative_seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``fmri-source`` sub-command to ``run_stream.py``'s sub-parsers.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers`` returned.
    """
    parser = commands.add_parser(
        "fmri-source",
        help="publish a scanner's real-time export folder (NIfTI/DICOM volumes) as the fMRI LSL stream",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--watch", required=True, metavar="DIR", help="folder the scanner exports volumes to")
    parser.add_argument(
        "--mask", default=None, metavar="FILE",
        help="brain mask NIfTI on the BOLD grid (default: Otsu mask of the first volume)",
    )  # fmt: skip
    parser.add_argument(
        "--atlas", default=None, metavar="FILE",
        help="atlas label NIfTI on the BOLD grid (default: a 3x3x3 grid parcellation of the mask)",
    )  # fmt: skip
    parser.add_argument(
        "--tr", type=_positive_seconds, default=None, metavar="S",
        help="repetition time in seconds (default: the first volume's NIfTI pixdim[4] or DICOM "
        "RepetitionTime, else RepetitionTime of its JSON sidecar)",
    )  # fmt: skip
    parser.add_argument(
        "--delay", type=_non_negative_seconds, default=None, metavar="S",
        help="export latency subtracted from each volume's detection time (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--existing", choices=("process", "skip"), default=None,
        help="volume files already in DIR at start: publish them (stamped by modification time) or skip "
        "them (default: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--prefix", default=None, help="stream name prefix: the stream is PREFIX-fMRI (default: scanner)"
    )
    parser.add_argument(
        "--source-id", default=None, help="LSL source_id (default: PREFIX-fMRI-<random>, new at each start)"
    )
    parser.add_argument(
        "--wait-for-consumers", type=_non_negative_seconds, default=None, metavar="S",
        help="hold the first volume up to S seconds after the stream opens until a consumer is connected "
        "(LSL sends no earlier sample to a new inlet; default 5)",
    )  # fmt: skip
    parser.add_argument(
        "--interval", type=_positive_seconds, default=None, metavar="S",
        help="seconds between two looks at the folder (default 0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--settle", type=_non_negative_seconds, default=None, metavar="S",
        help="seconds a file's size must stay unchanged before it is read (default 0.2)",
    )  # fmt: skip
    parser.add_argument(
        "--retry", type=_non_negative_seconds, default=None, metavar="S",
        help="seconds an incomplete file is retried before it is flagged and skipped (default 2)",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``fmri-source`` until Ctrl-C or SIGTERM; return the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of the sub-command (and the top-level ``lsl_config``).

    Returns
    -------
    status : int
        0 after a clean stop, 1 if the session could not be set up, 2 for a bad argument.
    """
    use_project_lsl_config(getattr(args, "lsl_config", None))  # before anything imports pylsl
    from scanner.errors import FmriSourceError
    from scanner.source import FmriSource

    logging.basicConfig(
        level=logging.INFO, format="fmri-source: %(levelname)s: %(message)s", stream=sys.stderr
    )
    folder = existing_folder(args.watch, "--watch folder")
    config = _config(args)
    if config is None:
        return 2
    try:
        source = FmriSource(folder, config, on_volume=_print_volume, on_stream=_print_stream)
    except (ValueError, FmriSourceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    stop = threading.Event()
    previous = _handle_stop_signals(stop)
    identity = source.identity
    print(f"Watching {folder} every {config.interval:g} s for NIfTI/DICOM volumes", flush=True)
    if source.watcher.skipped_at_start:
        print(
            f"  skipping the {source.watcher.skipped_at_start} volume file(s) already there (--existing skip)"
        )
    print(f"  fMRI stream: name={identity.name}  type={identity.stype}  source_id={identity.source_id}")
    if source.outlet is None:
        print("  the stream opens when the first volume arrives (it fixes the TR and the regions)")
    print("Press Ctrl-C to stop.", flush=True)
    status = 0
    try:
        with source:
            source.run(stop)
    except FmriSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        status = 1
    finally:
        _restore_signals(previous)
    if status == 0:
        print("Stopping.", flush=True)
    print(f"Done: {source.published} volume(s) published, {source.skipped} skipped.", flush=True)
    return status


def _config(args: argparse.Namespace) -> SourceConfig | None:
    """The ``[fmri_source]`` settings with this command's flags applied; None (and a message) if unusable."""
    from pipeline.settings import SettingsError

    try:
        settings = args.settings.replace(
            "fmri_source",
            prefix=args.prefix,
            source_id=args.source_id,
            tr=args.tr,
            mask=Path(args.mask) if args.mask else None,
            atlas=Path(args.atlas) if args.atlas else None,
            delay=args.delay,
            existing=args.existing,
            interval=args.interval,
            settle=args.settle,
            retry_for=args.retry,
            wait_for_consumers=args.wait_for_consumers,
        )
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    config: SourceConfig = settings.fmri_source
    for name, flag, value in (("mask", args.mask, config.mask), ("atlas", args.atlas, config.atlas)):
        if value is not None and not value.is_file():
            where = f"--{name}" if flag else f"[fmri_source] {name}"
            print(f"error: {where} {value}: no such file", file=sys.stderr)
            return None
    return config


def _print_stream(outlet: FmriOutlet) -> None:
    identity = outlet.identity
    print(
        f"Publishing {identity.name} (source_id {identity.source_id}): volume index + {outlet.n_regions} "
        f"region(s), TR {outlet.tr:g} s (from {outlet.metadata.get('tr_origin', '?')})",
        flush=True,
    )


def _print_volume(volume: PublishedVolume) -> None:
    print(
        f"volume {volume.index:5d}  {volume.path.name}  stamp={volume.stamp:.3f}  "
        f"published {volume.published - volume.detected:.2f} s after detection",
        flush=True,
    )


def _handle_stop_signals(stop: threading.Event) -> dict[int, Any]:
    """Make SIGINT and SIGTERM set ``stop``; return the handlers they replace."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
