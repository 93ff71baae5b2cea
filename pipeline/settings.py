"""One typed configuration for every command: defaults, a TOML file, then command-line flags.

The sections reuse each part's own typed configuration (``stream.config.WindowConfig``, ``ArtefactConfig``,
``features.config.FeatureConfig``, ``scanner.config.SourceConfig`` for ``fmri-source``,
``model.training.TrainConfig`` for ``train``), so a value is validated by the part that uses it.
``run_stream.py config`` prints the effective configuration as TOML; the same text, edited,
is a valid ``--config`` file.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.config import FeatureConfig
from model.bundle import DEFAULT_BUNDLE
from model.training import TrainConfig
from scanner.config import SourceConfig
from stream.config import AcquisitionConfig, ArtefactConfig, StreamQuery, WindowConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SettingsError(ValueError):
    """A configuration file or value that cannot be used; the message names it."""


@dataclass(frozen=True)
class StreamSettings:
    """Which LSL streams the live pipeline consumes.

    Parameters
    ----------
    eeg, fmri : str
        Stream queries: ``type:EEG``, ``name:MyAmp``, ``source_id:X`` or a plain name; ``fmri``
        may be ``"none"``: an EEG-only session (every window predicted from the EEG alone).
    triggers, truth : str | None
        The volume-trigger marker stream and an optional scored-stage marker stream.
    expected_eeg_channels : int | None
        Refuse an EEG stream with another channel count.
    expected_eeg_rate : float | None
        Refuse an EEG stream with another nominal rate (Hz).
    resolve_timeout : float
        Seconds to wait for each stream at start.
    queue_size : int
        Windows held for a slow consumer before the oldest is dropped (and counted).
    inlet_buffer_seconds : int
        Seconds of data each LSL inlet holds before the oldest is dropped.
    """

    eeg: str = "type:EEG"
    fmri: str = "type:fMRI"
    triggers: str | None = None
    truth: str | None = None
    expected_eeg_channels: int | None = None
    expected_eeg_rate: float | None = None
    resolve_timeout: float = 10.0
    queue_size: int = 64
    inlet_buffer_seconds: int = 360

    def __post_init__(self) -> None:
        for name in ("eeg", "fmri", "triggers", "truth"):
            text = getattr(self, name)
            if text is not None and not (name == "fmri" and self.eeg_only):
                StreamQuery.parse(text)

    @property
    def eeg_only(self) -> bool:
        """Whether the session has no fMRI stream (``fmri = "none"``)."""
        return self.fmri.strip().lower() == "none"


@dataclass(frozen=True)
class ModelSettings:
    """The model bundle and how it runs.

    Parameters
    ----------
    bundle : str | None
        Bundle folder; None is the shipped default bundle.
    backend : str
        ``"litert"`` (default: the bundle's LiteRT export, about 0.03 ms a window) or
        ``"tf-function"`` (the Keras model compiled by TensorFlow, about 1 ms a window). Both give the
        same probabilities to within float rounding (tested).
    """

    bundle: str | None = None
    backend: str = "litert"

    def __post_init__(self) -> None:
        if self.backend not in ("tf-function", "litert"):
            raise ValueError(f"backend must be 'tf-function' or 'litert', got {self.backend!r}")

    @property
    def bundle_path(self) -> Path:
        """The bundle folder to load."""
        return Path(self.bundle) if self.bundle else DEFAULT_BUNDLE


@dataclass(frozen=True)
class ServerSettings:
    """The web server: websocket feed, REST API, live and analysis pages.

    Parameters
    ----------
    host : str
        Address to bind; anything but loopback requires a token.
    port : int
        TCP port.
    token_env : str
        Environment variable holding the access token (a token is never written in a file
        that is printed or recorded).
    max_upload_bytes : int
        Largest CSV the analysis page accepts.
    max_upload_rows : int
        Most rows the analysis page accepts.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token_env: str = "SLEEPSTREAM_TOKEN"
    max_upload_bytes: int = 20_000_000
    max_upload_rows: int = 100_000

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.max_upload_bytes < 1 or self.max_upload_rows < 1:
            raise ValueError("max_upload_bytes and max_upload_rows must be >= 1")


@dataclass(frozen=True)
class RecordingSettings:
    """Where and how sessions are recorded.

    Parameters
    ----------
    directory : str
        Session folders are written under it (``<date>_<name>/``).
    enabled : bool
        Record every run (default) or not.
    fsync : bool
        Force every window to disk (survives a power cut, not only a crash); slower.
    """

    directory: str = "sessions"
    enabled: bool = True
    fsync: bool = False


def _command_source_config() -> SourceConfig:
    """``fmri-source``'s defaults: the first volume is held up to 5 s for a consumer to connect."""
    return SourceConfig(wait_for_consumers=5.0)


@dataclass(frozen=True)
class Settings:
    """Every setting of every command, in one place.

    Parameters
    ----------
    lsl_config : str | None
        A lab's ``lsl_api.cfg``; None is the project's loopback-only configuration.
    streams : StreamSettings
    window : WindowConfig
    artefacts : ArtefactConfig
        In-scanner EEG: gradient and pulse-artefact correction (``auto``: when the EEG stream
        says it is in the scanner).
    features : FeatureConfig
    model : ModelSettings
    server : ServerSettings
    recording : RecordingSettings
    fmri_source : SourceConfig
        ``run_stream.py fmri-source``: stream name, TR, mask and atlas, timing (the watched
        folder is the command's ``--watch``).
    train : TrainConfig
        ``run_stream.py train``: labels, context, folds, optimisation budget, seed (the feature
        table and the bundle folder are the command's arguments).
    """

    lsl_config: str | None = None
    streams: StreamSettings = field(default_factory=StreamSettings)
    window: WindowConfig = field(default_factory=WindowConfig)
    artefacts: ArtefactConfig = field(default_factory=ArtefactConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    fmri_source: SourceConfig = field(default_factory=_command_source_config)
    train: TrainConfig = field(default_factory=TrainConfig)

    def acquisition(self) -> AcquisitionConfig:
        """The acquisition configuration these settings describe."""
        streams = self.streams
        return AcquisitionConfig(
            eeg=StreamQuery.parse(streams.eeg),
            fmri=None if streams.eeg_only else StreamQuery.parse(streams.fmri),
            triggers=StreamQuery.parse(streams.triggers) if streams.triggers else None,
            truth=StreamQuery.parse(streams.truth) if streams.truth else None,
            expected_eeg_channels=streams.expected_eeg_channels,
            expected_eeg_rate=streams.expected_eeg_rate,
            resolve_timeout=streams.resolve_timeout,
            window=self.window,
            queue_size=streams.queue_size,
            inlet_buffer_seconds=streams.inlet_buffer_seconds,
            artefacts=self.artefacts,
        )

    def replace(self, section: str, **values: Any) -> Settings:
        """A copy with some values of one section changed (``None`` values are ignored).

        Parameters
        ----------
        section : str
            A section name, e.g. ``"server"``.
        **values
            New values; ``None`` leaves the current value (an unset command-line flag).

        Returns
        -------
        settings : Settings
        """
        given = {key: value for key, value in values.items() if value is not None}
        if not given:
            return self
        try:
            updated = dataclasses.replace(getattr(self, section), **given)
        except (TypeError, ValueError) as err:
            raise SettingsError(f"[{section}]: {err}") from None
        return dataclasses.replace(self, **{section: updated})

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for ``session.json``, ``/api/config`` and ``run_stream.py config``)."""
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by a TOML file when given.

    Parameters
    ----------
    path : str | Path | None
        A TOML file with any of the sections ``streams``, ``window``, ``artefacts``, ``features``, ``model``,
        ``server``, ``recording``, ``fmri_source``, ``train`` and the top-level key ``lsl_config``.
        A key left out keeps its default.

    Returns
    -------
    settings : Settings

    Raises
    ------
    SettingsError
        The file is missing or not TOML, or a section, key or value is unknown or invalid;
        the message names the file, the section and the key.
    """
    if path is None:
        return Settings()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"configuration file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path} is not valid TOML: {err}") from None
    settings: Settings = _build(Settings(), data, where=str(path))
    return settings


def _build(defaults: Any, data: dict[str, Any], where: str, section: str | None = None) -> Any:
    """``defaults`` (a dataclass instance) with the values of ``data`` checked and applied."""
    hints = typing.get_type_hints(type(defaults))
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(data) - known)
    label = f"{where}: [{section}]" if section else where
    if unknown:
        raise SettingsError(f"{label}: unknown key(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, raw in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(raw, dict):
                raise SettingsError(f"{where}: [{name}] must be a table, got {raw!r}")
            values[name] = _build(getattr(defaults, name), raw, where, name)
        else:
            values[name] = _convert(raw, kind, f"{label} {name}")
    try:
        return dataclasses.replace(defaults, **values)
    except (TypeError, ValueError) as err:
        raise SettingsError(f"{label}: {err}") from None


def _convert(raw: Any, kind: Any, label: str) -> Any:
    """Check a TOML value against a field's type (TOML has no null: leave a key out for None)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if origin is int and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if origin in (str, bool) and isinstance(raw, origin):
            return raw
        if origin is Path and isinstance(raw, str):
            return Path(raw)
        if origin is tuple and isinstance(raw, list):
            return tuple(raw)
        if origin is dict and isinstance(raw, dict):
            return {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise SettingsError(f"{label} = {raw!r}: expected {expected}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_toml(settings: Settings) -> str:
    """The settings as a TOML document; unset values (None) are written as comments.

    Parameters
    ----------
    settings : Settings

    Returns
    -------
    text : str
    """
    data = settings.as_dict()
    lines = [_toml_line("lsl_config", data.pop("lsl_config"))]
    for section, values in data.items():
        lines.append(f"\n[{section}]")
        lines.extend(_toml_line(key, value) for key, value in values.items())
    return "\n".join(lines) + "\n"


def _toml_line(key: str, value: Any) -> str:
    return f"# {key} =   (not set)" if value is None else f"{key} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{value} cannot be written in TOML")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    raise SettingsError(f"cannot write {value!r} in TOML")
