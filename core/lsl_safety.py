"""Point liblsl at the project's loopback-only configuration.

liblsl reads its configuration once, the first time the library is used, from
the file named by the ``LSLAPICFG`` environment variable (then ``lsl_api.cfg``
in the working directory, ``~/lsl_api/`` and ``/etc/lsl_api/``). Its defaults
send multicast and broadcast resolve packets on every network interface. Every
entry point of this project therefore calls :func:`use_project_lsl_config`
before the first ``pylsl`` or ``mne_lsl`` import.

This module must not import pylsl or mne_lsl itself.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_LSL_CONFIG = Path(__file__).with_name("lsl_api.cfg")


def use_project_lsl_config(lab_config: str | os.PathLike | None = None) -> Path:
    """Set ``LSLAPICFG`` to the loopback configuration unless a lab config is named.

    Parameters
    ----------
    lab_config : path-like | None
        A lab's own ``lsl_api.cfg``, for acquisition across machines. ``None``
        keeps an ``LSLAPICFG`` the user exported explicitly, or else selects the
        project's loopback-only configuration.

    Returns
    -------
    path : Path
        The configuration file liblsl will read.

    Raises
    ------
    FileNotFoundError
        If ``lab_config`` (or an exported ``LSLAPICFG``) names no readable file.
    """
    if lab_config is not None:
        chosen = Path(lab_config).expanduser().resolve()
    elif os.environ.get("LSLAPICFG"):
        chosen = Path(os.environ["LSLAPICFG"]).expanduser().resolve()
    else:
        chosen = PROJECT_LSL_CONFIG
    if not chosen.is_file():
        raise FileNotFoundError(
            f"LSL configuration file {chosen} does not exist; liblsl would fall back to "
            "its defaults, which multicast on every network interface."
        )
    os.environ["LSLAPICFG"] = str(chosen)
    return chosen
