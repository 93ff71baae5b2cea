"""The project keeps liblsl on loopback."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest

from stream.lsl_safety import PROJECT_LSL_CONFIG, use_project_lsl_config


def test_shipped_config_confines_lsl_to_this_machine():
    config = configparser.ConfigParser()
    config.read(PROJECT_LSL_CONFIG)
    assert config["ports"]["IPv6"] == "disable"
    assert config["multicast"]["ResolveScope"] == "machine"
    assert config["multicast"]["ListenAddress"] == "127.0.0.1"
    for key in ("Interfaces", "MachineAddresses", "AddressesOverride"):
        assert config["multicast"][key] == "{127.0.0.1}"
    assert config["lab"]["KnownPeers"] == "{127.0.0.1}"


def test_conftest_pointed_liblsl_at_the_project_config():
    assert Path(os.environ["LSLAPICFG"]) == PROJECT_LSL_CONFIG


def test_explicit_lab_config_wins_and_missing_files_are_refused(tmp_path, monkeypatch):
    lab = tmp_path / "lab_lsl_api.cfg"
    lab.write_text("[multicast]\nResolveScope = link\n")
    monkeypatch.setenv("LSLAPICFG", str(PROJECT_LSL_CONFIG))
    assert use_project_lsl_config(lab) == lab.resolve()
    assert os.environ["LSLAPICFG"] == str(lab.resolve())
    monkeypatch.setenv("LSLAPICFG", str(lab))
    assert use_project_lsl_config() == lab.resolve()  # a user's exported choice is kept
    monkeypatch.delenv("LSLAPICFG")
    assert use_project_lsl_config() == PROJECT_LSL_CONFIG
    with pytest.raises(FileNotFoundError, match=r"missing.cfg does not exist"):
        use_project_lsl_config(tmp_path / "missing.cfg")


@pytest.mark.lsl
@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs Linux /proc/net/udp")
def test_resolve_sockets_are_bound_to_loopback_only(short_dataset, unique_prefix):
    import pylsl

    from simulators.replay import SessionPlayer
    from simulators.session import read_session

    session = read_session(short_dataset, "99", "rest-1")
    with SessionPlayer(session, prefix=unique_prefix) as player:
        assert pylsl.resolve_byprop("source_id", player.streams["EEG"].source_id, 1, 5.0)
        rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    multicast_port = f"{16571:04X}"
    local = [row.split()[1] for row in rows if row.split()[1].endswith(":" + multicast_port)]
    assert local, "no LSL resolve socket found"
    assert set(local) == {f"0100007F:{multicast_port}"}  # 127.0.0.1, never 0.0.0.0
