"""The project keeps liblsl on loopback.

Each entry point (the command line, the test conftest, the benchmarks that use LSL) is run in a fresh
interpreter whose environment has no ``LSLAPICFG`` (or names a lab's file), with an import hook that
notes ``LSLAPICFG`` at the first import of ``pylsl`` or ``mne_lsl`` and ends the process right there:
liblsl is never loaded by these probes, so a broken entry point cannot send anything.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.lsl_safety import PROJECT_LSL_CONFIG, use_project_lsl_config

PROJECT = Path(__file__).resolve().parents[1]

# Run ENTRY (a path) as RUN_NAME with ARGV; print LSLAPICFG as it is when pylsl or mne_lsl is first
# imported, inside the entry point or, if it imports neither, right after it. Keras and TensorFlow
# (nothing of LSL, but seconds to import) are empty modules here.
PROBE = """
import importlib.abc, importlib.util, json, os, runpy, sys

entry, run_name, argv = json.loads(sys.argv[1])
state = {"inside": True}


class FirstLslImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pylsl", "mne_lsl"):
            seen = {"module": name, "LSLAPICFG": os.environ.get("LSLAPICFG"), "inside": state["inside"]}
            print("PROBE " + json.dumps(seen), flush=True)
            os._exit(0)  # before liblsl is loaded
        if name.partition(".")[0] in ("keras", "tensorflow"):
            return importlib.util.spec_from_loader(name, Empty())
        return None


class Empty(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, FirstLslImport())
sys.argv = [entry, *argv]
runpy.run_path(entry, run_name=run_name)
state["inside"] = False
import pylsl
"""

# Entry points that use LSL: (path, run name, arguments). The command line sets the configuration in
# main() from its options, so it runs as __main__ with commands that open streams; the others set it
# on import.
COMMAND_LINE = "run_stream.py"
MODULE_ENTRY_POINTS = (
    ("tests/conftest.py", "conftest"),
    ("benchmarks/latency.py", "probe"),
    ("benchmarks/replay_process.py", "probe"),
    ("benchmarks/stream_memory.py", "probe"),
    ("benchmarks/throughput.py", "probe"),
)
COMMANDS = (("replay",), ("fmri-source", "--watch", "."))


def first_lsl_import(entry: str, run_name: str, argv: tuple[str, ...] = (), **environment: str) -> dict:
    """What the probe saw of ``entry`` run without ``LSLAPICFG`` (plus ``environment``)."""
    env = {key: value for key, value in os.environ.items() if key != "LSLAPICFG"}
    env.update(environment, PYTHONPATH=str(PROJECT))
    process = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([str(PROJECT / entry), run_name, list(argv)])],
        capture_output=True, text=True, cwd=PROJECT, env=env, timeout=600,
    )  # fmt: skip
    probes = [line for line in process.stdout.splitlines() if line.startswith("PROBE ")]
    assert probes, f"{entry} {argv}: no pylsl import seen\n{process.stdout[-2000:]}\n{process.stderr[-3000:]}"
    return json.loads(probes[0].removeprefix("PROBE "))


@pytest.fixture
def lab_config(tmp_path) -> Path:
    lab = tmp_path / "lab_lsl_api.cfg"
    lab.write_text("[multicast]\nResolveScope = link\n")
    return lab


def test_shipped_config_confines_lsl_to_this_machine():
    config = configparser.ConfigParser()
    assert config.read(PROJECT_LSL_CONFIG) == [str(PROJECT_LSL_CONFIG)]
    assert config["ports"]["IPv6"] == "disable"
    multicast = config["multicast"]
    assert multicast["ResolveScope"] == "machine" and int(multicast["TTLOverride"]) == 0
    assert ipaddress.ip_address(multicast["ListenAddress"]).is_loopback
    lists = ("Interfaces", "MachineAddresses", "AddressesOverride", "KnownPeers")
    for key in lists:
        value = config["lab" if key == "KnownPeers" else "multicast"][key]
        assert value.startswith("{") and value.endswith("}"), (key, value)
        addresses = [ipaddress.ip_address(a.strip()) for a in value[1:-1].split(",")]
        assert addresses and all(a.is_loopback and a.version == 4 for a in addresses), (key, value)


@pytest.mark.parametrize(("entry", "run_name"), MODULE_ENTRY_POINTS)
def test_entry_points_select_the_loopback_config_before_pylsl(entry, run_name):
    seen = first_lsl_import(entry, run_name)
    assert seen["LSLAPICFG"] == str(PROJECT_LSL_CONFIG), seen


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_the_command_line_selects_the_loopback_config_before_pylsl(command):
    seen = first_lsl_import(COMMAND_LINE, "__main__", command)
    assert seen["inside"], f"{command[0]} imported no LSL module: it cannot show when the config is set"
    assert seen["LSLAPICFG"] == str(PROJECT_LSL_CONFIG), seen


def test_the_tests_use_the_loopback_config_even_when_a_lab_config_is_exported(lab_config):
    seen = first_lsl_import("tests/conftest.py", "conftest", LSLAPICFG=str(lab_config.resolve()))
    assert seen["LSLAPICFG"] == str(PROJECT_LSL_CONFIG), seen


def test_a_lab_config_named_by_the_user_is_used(lab_config, tmp_path):
    lab = str(lab_config.resolve())
    # On the command line, in the configuration file, or exported.
    assert first_lsl_import(COMMAND_LINE, "__main__", ("--lsl-config", lab, "replay"))["LSLAPICFG"] == lab
    settings = tmp_path / "lab.toml"
    settings.write_text(f"lsl_config = {json.dumps(lab)}\n")
    seen = first_lsl_import(COMMAND_LINE, "__main__", ("--config", str(settings), "replay"))
    assert seen["LSLAPICFG"] == lab
    assert first_lsl_import(COMMAND_LINE, "__main__", ("replay",), LSLAPICFG=lab)["LSLAPICFG"] == lab
    assert first_lsl_import("benchmarks/replay_process.py", "probe", LSLAPICFG=lab)["LSLAPICFG"] == lab


def test_explicit_lab_config_wins_and_missing_files_are_refused(lab_config, tmp_path, monkeypatch):
    lab = lab_config
    monkeypatch.setenv("LSLAPICFG", str(PROJECT_LSL_CONFIG))
    assert use_project_lsl_config(lab) == lab.resolve()
    assert os.environ["LSLAPICFG"] == str(lab.resolve())
    monkeypatch.setenv("LSLAPICFG", str(lab))
    assert use_project_lsl_config() == lab.resolve()  # a user's exported choice is kept
    monkeypatch.delenv("LSLAPICFG")
    assert use_project_lsl_config() == PROJECT_LSL_CONFIG
    with pytest.raises(FileNotFoundError, match=r"missing.cfg does not exist"):
        use_project_lsl_config(tmp_path / "missing.cfg")
    monkeypatch.setenv("LSLAPICFG", str(tmp_path / "gone.cfg"))  # an exported file that is not there
    with pytest.raises(FileNotFoundError, match=r"gone.cfg does not exist"):
        use_project_lsl_config()


@pytest.mark.lsl
@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs Linux /proc/net/udp")
def test_resolve_sockets_are_bound_to_loopback_only(short_dataset, unique_prefix):
    import pylsl

    from recordings.session import read_session
    from simulators.replay import SessionPlayer

    session = read_session(short_dataset, "99", "rest-1")
    with SessionPlayer(session, prefix=unique_prefix) as player:
        assert pylsl.resolve_byprop("source_id", player.streams["EEG"].source_id, 1, 5.0)
        rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    multicast_port = f"{16571:04X}"
    local = [row.split()[1] for row in rows if row.split()[1].endswith(":" + multicast_port)]
    assert local, "no LSL resolve socket found"
    assert set(local) == {f"0100007F:{multicast_port}"}  # 127.0.0.1, never 0.0.0.0
