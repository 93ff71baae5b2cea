"""A live session for tests: a looping replay with truth, acquisition and a pipeline around a bundle."""

from __future__ import annotations

from simulators.replay import SessionPlayer
from simulators.session import read_session
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig
from stream.pipeline import Pipeline
from viewer.app import ServerState


def live_session(short_dataset, prefix: str, bundle, token: str | None = None, speed: float = 20.0):
    """Replay the short test run (looping, with truth) and consume it: ``(player, acquisition, state)``.

    The caller stops the acquisition and the player.
    """
    from model.inference import Predictor

    session = read_session(short_dataset, "99", "sleep-1")
    # Looping: the EEG goes on after the run's last volume, as it does live.
    player = SessionPlayer(
        session, speed=speed, loop=True, with_truth=True, prefix=prefix, wait_for_consumers=60
    )
    player.start()
    # Generous bounds: they only guard against a hang (a resolve returns as soon as it finds the stream).
    acquisition = Acquisition(
        AcquisitionConfig.for_replay(prefix, with_truth=True, resolve_timeout=60)
    ).start()
    state = ServerState(
        pipeline=Pipeline(acquisition, Predictor(bundle)),
        bundle=bundle,
        session={"name": prefix},
        token=token,
    )
    return player, acquisition, state
