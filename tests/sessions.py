"""A live session for tests: a looping replay with truth, and the pipeline built as the CLI builds it."""

from __future__ import annotations

from pipeline.factory import LivePipeline, build_pipeline
from pipeline.settings import RecordingSettings, Settings
from recordings.session import read_session
from simulators.replay import SessionPlayer
from stream.config import AcquisitionConfig
from viewer.app import ServerState

TEST_SETTINGS = Settings(recording=RecordingSettings(enabled=False))
"""The defaults, without a session record (tests that record say where)."""


def replay_pipeline(
    prefix: str, bundle, settings: Settings = TEST_SETTINGS, *, with_truth: bool = True, **acquisition
) -> LivePipeline:
    """The pipeline of ``build_pipeline`` on the streams of a replay named ``prefix``, started.

    Resolves wait up to 60 s: the bound only guards against a hang (a resolve returns as soon as
    it finds the stream). No LSL prediction outlet is published.
    """
    config = AcquisitionConfig.for_replay(
        prefix, with_truth=with_truth, **{"resolve_timeout": 60, "window": settings.window, **acquisition}
    )
    return build_pipeline(settings, config, bundle=bundle, name=prefix, outlet_prefix=None)


def live_session(short_dataset, prefix: str, bundle, token: str | None = None, speed: float = 20.0):
    """Replay the short test run (looping, with truth) and consume it: ``(player, live, state)``.

    The caller closes ``live`` and stops the player.
    """
    session = read_session(short_dataset, "99", "sleep-1")
    # Looping: the EEG goes on after the run's last volume, as it does live.
    player = SessionPlayer(
        session, speed=speed, loop=True, with_truth=True, prefix=prefix, wait_for_consumers=60
    )
    player.start()
    live = replay_pipeline(prefix, bundle)
    state = ServerState(pipeline=live.pipeline, bundle=bundle, session={"name": prefix}, token=token)
    return player, live, state
