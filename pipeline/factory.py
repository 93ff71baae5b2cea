"""The one way to assemble a live pipeline: from the typed configuration to a running pipeline and its sinks.

Used by ``run_stream.py demo``/``live``, the end-to-end benchmarks and the tests, so that what
is measured and tested is what runs in a lab. The web server (``viewer``) adds its websocket
broadcaster when it serves the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.extractor import FeatureExtractor
from model.bundle import ModelBundle, load_bundle
from model.contract import SYNTHETIC_WARNING, check_live, is_synthetic, range_warnings, run_contract
from model.inference import Predictor
from pipeline.lsl_output import PredictionOutlet
from pipeline.pipeline import Pipeline
from pipeline.recorder import SessionRecorder
from pipeline.settings import Settings
from stream.acquisition import Acquisition
from stream.config import AcquisitionConfig


@dataclass
class LivePipeline:
    """An assembled pipeline: acquisition, features and model, and the sinks it feeds.

    Attributes
    ----------
    acquisition : Acquisition
        The stream consumer (started by :func:`build_pipeline` unless asked not to).
    pipeline : Pipeline
        Windows to predictions; run it with ``await pipeline.run()`` (the web server does).
    bundle : ModelBundle
        The model bundle whose predictor the pipeline uses.
    outlet : PredictionOutlet | None
        The LSL prediction streams, when published.
    recorder : SessionRecorder | None
        The session record, when recording.
    warnings : list of str
        What the operator must know about the model for this run: trained on synthetic data, EEG
        rate or TR outside the trained range (:func:`model_warnings`).
    """

    acquisition: Acquisition
    pipeline: Pipeline
    bundle: ModelBundle
    outlet: PredictionOutlet | None = None
    recorder: SessionRecorder | None = None
    warnings: list[str] = field(default_factory=list)
    _closed: bool = field(default=False, repr=False)

    def close(self) -> Path | None:
        """Withdraw the outlets, finish the record and close the inlets (idempotent).

        Returns
        -------
        folder : Path | None
            The recorded session's folder, when recording.
        """
        if self._closed:
            return self.recorder.folder if self.recorder is not None else None
        self._closed = True
        try:
            if self.outlet is not None:
                self.outlet.close()
            return self.recorder.close() if self.recorder is not None else None
        finally:
            self.acquisition.stop()

    def __enter__(self) -> LivePipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_pipeline(
    settings: Settings,
    acquisition_config: AcquisitionConfig | None = None,
    *,
    bundle: ModelBundle | None = None,
    name: str = "session",
    session_info: dict[str, Any] | None = None,
    outlet_prefix: str | None = "sleepstream",
    start: bool = True,
) -> LivePipeline:
    """Assemble (and start) the live pipeline the configuration describes.

    Parameters
    ----------
    settings : Settings
        Features, model, recording (and, unless ``acquisition_config`` is given, streams and
        window geometry).
    acquisition_config : AcquisitionConfig | None
        The streams to consume; ``settings.acquisition()`` when None (a replay names its own).
    bundle : ModelBundle | None
        An already loaded bundle; ``settings.model.bundle_path`` is loaded when None.
    name : str
        Session name: the record's folder is ``<date>_<name>``.
    session_info : dict | None
        What the record says about the session (with the configuration and bundle identity).
    outlet_prefix : str | None
        Name prefix of the LSL prediction streams; None publishes none.
    start : bool
        Find the streams and start acquiring (raises ``StreamNotFoundError`` or
        ``StreamMismatchError`` when they cannot be used; nothing is left open then).

    Returns
    -------
    live : LivePipeline
        Close it (or use it as a context manager) to stop.

    Raises
    ------
    model.contract.ContractError
        Before anything is opened, when the bundle's feature contract differs from the features
        and window geometry this run computes (naming the setting), or is unknown.
    """
    bundle = bundle if bundle is not None else load_bundle(settings.model.bundle_path)
    acquisition_config = acquisition_config or settings.acquisition()
    check_live(
        bundle.contract,
        run_contract(settings.features.to_dict(), acquisition_config.window.geometry()),
        str(bundle.path) if bundle.path is not None else "in use",
    )
    predictor = Predictor(bundle, backend=settings.model.backend)
    acquisition = Acquisition(acquisition_config)
    if start:
        acquisition.start()
    live = LivePipeline(
        acquisition=acquisition,
        pipeline=Pipeline(acquisition, predictor, FeatureExtractor(settings.features)),
        bundle=bundle,
        warnings=model_warnings(bundle, acquisition),
    )
    try:
        if outlet_prefix is not None:
            live.outlet = PredictionOutlet(bundle.label_names, prefix=outlet_prefix)
            live.pipeline.add_sink(live.outlet)
        recording = settings.recording
        if recording.enabled:
            metadata = {
                "session": session_info or {},
                "configuration": settings.as_dict(),
                "model": {**bundle.identity, "warnings": live.warnings},
            }
            live.recorder = SessionRecorder(recording.directory, name, metadata, fsync=recording.fsync)
            live.pipeline.add_sink(live.recorder)
    except BaseException:
        live.close()
        raise
    return live


def model_warnings(bundle: ModelBundle, acquisition: Acquisition) -> list[str]:
    """Warnings about the model for this run: synthetic training data, EEG rate or TR outside its range.

    The rate and TR are the connected streams' (none before the acquisition is connected).
    """
    warnings = [SYNTHETIC_WARNING] if is_synthetic(bundle.contract) else []
    windower = acquisition.windower
    if windower is not None:
        tr = windower.tr if windower.use_fmri else None  # an EEG-only session has no TR
        warnings += range_warnings(bundle.contract, sfreq=windower.sfreq, tr=tr)
    if acquisition.config.fmri is None:
        warnings.append("EEG-only session (no fMRI stream): every window is predicted from the EEG alone")
    return warnings
