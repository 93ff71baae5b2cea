"""``run_stream.py replay``: publish a recorded or surrogate session as LSL streams."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import existing_folder, non_negative_int, speed, stop_on_signals
from cli.recording_source import add_recording_options

if TYPE_CHECKING:
    from recordings.recording import Recording


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` sub-command."""
    replay = commands.add_parser(
        "replay",
        help="publish a recorded or surrogate session as LSL streams",
        description=(
            "Publish a recording as LSL streams: EEG, and where the recording has them fMRI, volume "
            "triggers and (--with-truth) the scored stages."
        ),
    )
    replay.add_argument(
        "--session",
        default="surrogate",
        help="'surrogate' (the bundled surrogate subject), a ds003768-style dataset folder, or a "
        "recording file (.edf, .bdf, .vhdr, .xdf; a recording without BOLD publishes EEG only)",
    )
    add_recording_options(replay, yasa=False)
    replay.add_argument(
        "--subject", default=None, help="subject label (default: 27 for the surrogate, else 01)"
    )
    replay.add_argument("--run", default="sleep-2", help="run, e.g. sleep-1 or rest-2 (default: sleep-2)")
    replay.add_argument(
        "--speed", type=speed, default=1.0, help="1 = real time; 10 = ten times faster; 'max'"
    )
    replay.add_argument("--loop", action="store_true", help="start again at the end")
    replay.add_argument(
        "--linger",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds the streams stay open after the end of a replay without --loop, so that consumers "
        "receive its last samples (default 3)",
    )
    replay.add_argument(
        "--fmri-lag", type=float, default=0.0, metavar="S", help="fMRI delivery delay in seconds"
    )
    replay.add_argument(
        "--fmri-stamp-error",
        type=float,
        default=0.0,
        metavar="S",
        help="SD of an error added to fMRI timestamps (a scanner-side clock), seconds",
    )
    replay.add_argument("--with-truth", action="store_true", help="also publish the scored stages (Markers)")
    replay.add_argument("--prefix", default=None, help="stream-name prefix (default: the session label)")
    replay.add_argument("--mask", default=None, help="brain mask NIfTI for the region means")
    replay.add_argument("--atlas", default=None, help="atlas label NIfTI for the region means")
    replay.add_argument(
        "--sfreq", type=float, default=250.0, help="EEG rate of the surrogate (default 250 Hz)"
    )
    replay.add_argument(
        "--dummy-scans",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="volume triggers before the run's first volume (default: from the BOLD sidecar when needed)",
    )
    replay.add_argument(
        "--wait-for-consumers",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a consumer on every stream before starting",
    )
    replay.set_defaults(handler=run)


def load_session(args: argparse.Namespace) -> Recording:
    """The recording named by ``--session`` (with ``--subject`` and ``--run`` for a dataset)."""
    from recordings.bids import list_runs
    from recordings.errors import DatasetFormatError
    from recordings.open import read_recording
    from recordings.session import read_session
    from simulators.surrogate import BUNDLED_SUBJECT, bundled_surrogate

    try:
        if args.session == "surrogate":
            root = bundled_surrogate((args.run,), sfreq=args.sfreq)
            subject = args.subject or BUNDLED_SUBJECT
        else:
            path = Path(args.session)
            if path.is_file():
                return read_recording(path, hypnogram=args.hypnogram, eeg_unit=args.eeg_unit)
            root = existing_folder(args.session, "recording file or dataset folder")
            if not list_runs(root):
                raise SystemExit(
                    f"error: {root}: not a ds003768-style dataset (sub-XX/eeg/*_eeg.vhdr); give one "
                    "recording file to replay"
                )
            subject = args.subject or "01"
        return read_session(
            Path(root), subject, args.run, mask=args.mask, atlas=args.atlas, dummy_scans=args.dummy_scans
        )
    except DatasetFormatError as err:
        raise SystemExit(f"error: {err}") from None


def run(args: argparse.Namespace) -> int:
    """Replay until the end (or forever with ``--loop``); Ctrl-C stops."""
    from simulators.replay import SessionPlayer

    session = load_session(args)
    player = SessionPlayer(
        session,
        speed=args.speed,
        loop=args.loop,
        fmri_lag=args.fmri_lag,
        with_truth=args.with_truth,
        prefix=args.prefix,
        wait_for_consumers=args.wait_for_consumers,
        fmri_stamp_error=args.fmri_stamp_error,
    )
    stop_on_signals()
    with player:
        print(
            f"Replaying {session.label}: {session.duration:.0f} s of EEG at {session.sfreq:g} Hz, "
            + (f"{session.n_volumes} volumes (TR {session.tr:g} s)" if session.has_fmri else "no fMRI")
            + f", {len(session.stages)} scored epochs, speed {args.speed:g}",
            flush=True,
        )
        for kind, identity in player.streams.items():
            print(
                f"  {kind:<8} name={identity.name}  type={identity.stype}  source_id={identity.source_id}",
                flush=True,
            )
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while player.is_running:
                time.sleep(0.2)
            if player.error is None and args.linger > 0:
                # Closing an outlet drops what it has not sent yet: after a fast replay that can be
                # the end of the session.
                print(f"Replay finished; streams open for {args.linger:g} s more.", flush=True)
                time.sleep(args.linger)
        except KeyboardInterrupt:
            print("Stopping.", flush=True)
    if player.error is not None:
        print(f"error: replay failed: {player.error}", file=sys.stderr)
        return 1
    print(f"Done: {player.samples_pushed} EEG samples pushed.", flush=True)
    return 0
