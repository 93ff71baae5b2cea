"""Import TensorFlow, Keras and LiteRT quietly and deterministically, in one place.

TensorFlow's native start-up writes informational lines straight to file descriptor 2 (the oneDNN
notice, the CPU-instruction notice, absl's "before InitializeLog" warning, LiteRT's XNNPACK notice),
and ``TF_CPP_MIN_LOG_LEVEL`` does not silence all of them. While TensorFlow loads, descriptor 2 is
captured; the known informational lines are dropped and everything else (warnings, errors, the
project's own output from other threads) is written back to standard error.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

# Lines of native start-up chatter: absl INFO records ("I1203 ... file.cc:12] ..."), absl's notice
# that it is not initialised, the second line of the CPU-instruction notice, LiteRT's delegate notice.
_CHATTER = re.compile(
    r"^(I\d{4} [\d:. ]+\d+ \S+:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)\s*$"
)


def is_startup_chatter(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's informational start-up lines (never a warning or error)."""
    return _CHATTER.match(line) is not None


@contextlib.contextmanager
def native_startup_chatter_filtered() -> Iterator[None]:
    """Capture file descriptor 2 while native libraries load; write back all but their chatter."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (e.g. a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_startup_chatter(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _quiet_environment() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_tensorflow() -> ModuleType:
    """Return the ``tensorflow`` module with its start-up chatter silenced."""
    _quiet_environment()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with native_startup_chatter_filtered():
        import tensorflow

    return tensorflow


def import_keras() -> ModuleType:
    """Return the ``keras`` module (TensorFlow backend) with TensorFlow's start-up chatter silenced."""
    import_tensorflow()
    import keras

    return keras


def litert_interpreter(model_path: str) -> Interpreter:
    """A LiteRT ``Interpreter`` of ``model_path`` with its tensors allocated, without its notices."""
    with native_startup_chatter_filtered():
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=model_path)
        interpreter.allocate_tensors()
    return interpreter
