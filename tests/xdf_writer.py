"""A minimal writer of the XDF file format (https://github.com/sccn/xdf/wiki/Specifications), for tests.

An XDF file is the magic ``XDF:`` followed by chunks. Each chunk is a variable-length
integer (one byte giving its width, 1, 4 or 8, then the little-endian value) holding the
chunk's length in bytes counted from its tag, a 2-byte tag, then the content:

- tag 1, FileHeader: XML;
- tag 2, StreamHeader: stream id (uint32) + XML (name, type, channel count and format,
  nominal rate, description);
- tag 3, Samples: stream id + number of samples (variable-length integer), then per sample a
  timestamp byte count (8, or 0 for "deduce from the previous one") + the timestamp (float64) +
  the values (little-endian numbers, or per channel a variable-length length + UTF-8 bytes);
- tag 4, ClockOffset: stream id + collection time (float64) + offset (float64);
- tag 6, StreamFooter: stream id + XML (first and last timestamp, sample count).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

_FORMATS = {
    "float32": "<f4",
    "double64": "<f8",
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
}
_CHUNK_SAMPLES = 1000


@dataclass
class XdfStream:
    """One stream to write.

    ``time_series`` is an array (n_samples, n_channels) for numeric formats, or a list of
    lists of str for ``"string"``; ``session`` entries go into the description's ``session``
    child; ``clock_offsets`` are (collection time, offset) pairs.
    """

    name: str
    stype: str
    channel_format: str
    nominal_srate: float
    time_stamps: np.ndarray
    time_series: np.ndarray | list[list[str]]
    labels: Sequence[str] = ()
    types: Sequence[str] = ()
    units: Sequence[str] = ()
    session: Mapping[str, str] = field(default_factory=dict)
    clock_offsets: Sequence[tuple[float, float]] = ()
    omit_stamps: bool = False  # write the timestamp of the first sample of each chunk only

    @property
    def channel_count(self) -> int:
        if self.channel_format == "string":
            return len(self.time_series[0]) if len(self.time_series) else 1
        return int(np.asarray(self.time_series).shape[1])


def varlen(value: int) -> bytes:
    """A variable-length integer: width byte, then the value little-endian."""
    if value < 2**8:
        return b"\x01" + struct.pack("<B", value)
    if value < 2**32:
        return b"\x04" + struct.pack("<I", value)
    return b"\x08" + struct.pack("<Q", value)


def chunk(tag: int, content: bytes) -> bytes:
    """One chunk: its length (tag included), the tag, the content."""
    return varlen(len(content) + 2) + struct.pack("<H", tag) + content


def _header_xml(stream: XdfStream, stream_id: int) -> bytes:
    channels = "".join(
        "<channel>"
        + "".join(
            f"<{key}>{escape(values[i])}</{key}>"
            for key, values in (("label", stream.labels), ("type", stream.types), ("unit", stream.units))
            if i < len(values)
        )
        + "</channel>"
        for i in range(stream.channel_count)
    )
    session = "".join(f"<{key}>{escape(value)}</{key}>" for key, value in stream.session.items())
    desc = f"<desc><channels>{channels}</channels>{f'<session>{session}</session>' if session else ''}</desc>"
    return (
        '<?xml version="1.0"?><info>'
        f"<name>{escape(stream.name)}</name><type>{escape(stream.stype)}</type>"
        f"<channel_count>{stream.channel_count}</channel_count>"
        f"<channel_format>{stream.channel_format}</channel_format>"
        f"<nominal_srate>{stream.nominal_srate:.10g}</nominal_srate>"
        f"<source_id>{escape(stream.name)}-{stream_id}</source_id><version>1.1</version>"
        f"<created_at>0</created_at><uid>uid-{stream_id}</uid><session_id>default</session_id>"
        f"<hostname>localhost</hostname>{desc}</info>"
    ).encode()


def _values(stream: XdfStream, row: object) -> bytes:
    if stream.channel_format == "string":
        out = b""
        for text in row:  # type: ignore[attr-defined]
            data = str(text).encode()
            out += varlen(len(data)) + data
        return out
    return np.asarray(row, dtype=_FORMATS[stream.channel_format]).tobytes()


def _samples(stream: XdfStream, stream_id: int, start: int, stop: int) -> bytes:
    content = struct.pack("<I", stream_id) + varlen(stop - start)
    for i in range(start, stop):
        if stream.omit_stamps and i != start:
            content += b"\x00"
        else:
            content += b"\x08" + struct.pack("<d", float(stream.time_stamps[i]))
        content += _values(stream, stream.time_series[i])
    return chunk(3, content)


def write_xdf(path: str | Path, streams: Sequence[XdfStream]) -> Path:
    """Write ``streams`` to an XDF file at ``path`` (headers, samples in chunks, offsets, footers)."""
    path = Path(path)
    out = bytearray(b"XDF:")
    out += chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for stream_id, stream in enumerate(streams, start=1):
        out += chunk(2, struct.pack("<I", stream_id) + _header_xml(stream, stream_id))
    for stream_id, stream in enumerate(streams, start=1):
        n = len(stream.time_stamps)
        for start in range(0, n, _CHUNK_SAMPLES):
            out += _samples(stream, stream_id, start, min(n, start + _CHUNK_SAMPLES))
        for collected, offset in stream.clock_offsets:
            out += chunk(4, struct.pack("<Idd", stream_id, collected, offset))
    for stream_id, stream in enumerate(streams, start=1):
        n = len(stream.time_stamps)
        first = float(stream.time_stamps[0]) if n else 0.0
        last = float(stream.time_stamps[-1]) if n else 0.0
        offsets = "".join(
            f"<offset><time>{t:.10g}</time><value>{v:.10g}</value></offset>" for t, v in stream.clock_offsets
        )
        footer = (
            '<?xml version="1.0"?><info>'
            f"<first_timestamp>{first:.10g}</first_timestamp><last_timestamp>{last:.10g}</last_timestamp>"
            f"<sample_count>{n}</sample_count><clock_offsets>{offsets}</clock_offsets></info>"
        )
        out += chunk(6, struct.pack("<I", stream_id) + footer.encode())
    path.write_bytes(bytes(out))
    return path
