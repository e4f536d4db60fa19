"""MCAP files, read in file order whatever their state, and written so that a crash loses little.

``McapFile`` reads any MCAP: with its summary (index) it lists topics without reading the
data; without one (a recorder killed, a battery pulled, a file cut in transfer) it scans the
file and recovers every complete message, saying how many and where the file stops making
sense. A complete file written without a summary (its footer intact) is scanned too, and said
to be complete. Schema and Channel records are found wherever the specification allows them:
in the summary, in the data section, inside chunks; a summary with statistics but without
(some of) the channels or schemas has the data section read for their definitions, as far as
needed. Messages come in the order they were written, so a clock that stepped back is seen as
such, never sorted across.

``McapWriter`` writes the ros2 profile with small chunks that are written, flushed and synced
when full or ``flush_period_s`` after their first message, so at most that much is at risk in
memory; ``close`` adds the summary that indexed readers (rosbags, ``ros2 bag``) use.
"""
from __future__ import annotations

import os
import struct
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_METADATA, OP_METADATA_INDEX = 0x07, 0x08, 0x0B, 0x0C, 0x0D
OP_SUMMARY_OFFSET, OP_DATA_END = 0x0E, 0x0F
FOOTER_SIZE = 1 + 8 + 8 + 8 + 4 + len(MAGIC)  # footer record + closing magic
U8, U16, U32, U64 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
RECORD = struct.Struct("<BQ")  # opcode, content length
MESSAGE = struct.Struct("<HIQQ")  # channel, sequence, log time, publish time
CHUNK_HEAD = struct.Struct("<QQQI")  # start time, end time, uncompressed size, uncompressed crc


class McapError(ValueError):
    """An MCAP file that cannot be read at all; the message says why."""


@dataclass
class Channel:
    """An MCAP channel: its id, topic, schema name, message encoding, metadata and schema text."""

    id: int
    topic: str
    msgtype: str  # the schema's name; "" for a schemaless channel
    encoding: str  # message encoding: cdr (ROS 2), ros1, ...
    metadata: dict[str, str]
    schema: tuple[str, str] | None = None  # (schema encoding, definition text), when stored
    count: int = 0
    schema_id: int = 0  # 0: no schema


def _resolve(channel: Channel, schemas: dict[int, tuple[str, str, str]]) -> None:
    """Give a channel its schema's name and definition, once the schema is known."""
    schema = schemas.get(channel.schema_id)
    if schema is not None:
        channel.msgtype, channel.schema = schema[0], (schema[1], schema[2])


@dataclass
class McapFile:
    """One MCAP file opened for reading (``open`` first; ``close`` at the end, or use ``with``)."""

    path: Path
    channels: dict[int, Channel] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    indexed: bool = False  # False: no usable summary; the file was scanned
    recovered: int = 0  # messages found by the scan (when not indexed)
    cut_at: int | None = None  # bytes readable: where the last complete record ends (when the file is cut)
    complete: bool = False  # the footer and closing magic are there: the file was closed (indexed or not)
    profile: str = ""
    rosbag2_metadata: str | None = None  # the YAML rosbag2 stores in the file, when present

    def __post_init__(self) -> None:
        self._bio: BinaryIO | None = None
        self._good = 0  # file offset where the last complete record read ends
        self._size = 0
        self._data_start = 0
        self._data_end = 0
        self._schemas: dict[int, tuple[str, str, str]] = {}
        self._chunk_channels: dict[int, set[int]] = {}  # chunk offset -> channels in it (indexed files)

    def __enter__(self) -> McapFile:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._bio = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._bio is not None:
            self._bio.close()
            self._bio = None

    def _open(self) -> None:
        bio = self._bio
        self._size = os.fstat(bio.fileno()).st_size
        if self._size == 0:
            raise McapError("the file is empty (0 bytes): nothing was recorded")
        if bio.read(8) != MAGIC:
            raise McapError("not an MCAP file (its first bytes are not the MCAP magic)")
        head = bio.read(9)
        if len(head) < 9 or head[0] != OP_HEADER:
            raise McapError("the MCAP header record is missing")
        content = bio.read(RECORD.unpack(head)[1])
        self.profile = _string(content, 0)[0] if len(content) >= 4 else ""
        self._data_start = bio.tell()
        try:
            self.indexed = self._read_summary()
        except (struct.error, IndexError, UnicodeDecodeError):
            self.channels.clear()  # a damaged summary: scan the data instead
            self._schemas.clear()
            self._chunk_channels.clear()
            self.indexed = False
        if self.indexed:
            return
        self._data_end = self._size
        self._scan()

    def _read_summary(self) -> bool:
        """Read the summary section; False when the file has none that is complete."""
        bio = self._bio
        if self._size < self._data_start + FOOTER_SIZE:
            return False
        bio.seek(self._size - FOOTER_SIZE)
        footer = bio.read(FOOTER_SIZE)
        if footer[-8:] != MAGIC or footer[0] != OP_FOOTER or U64.unpack_from(footer, 1)[0] != 20:
            return False
        self.complete = True
        summary_start = U64.unpack_from(footer, 9)[0]
        footer_start = self._size - FOOTER_SIZE
        if not self._data_start <= summary_start <= footer_start or summary_start == 0:
            return False
        bio.seek(summary_start)
        summary = bio.read(footer_start - summary_start)
        statistics = None
        metadata_offsets = []
        pos = 0
        while pos + 9 <= len(summary):
            op, length = RECORD.unpack_from(summary, pos)
            body = summary[pos + 9:pos + 9 + length]
            pos += 9 + length
            if op == OP_SCHEMA:
                self._schema(body)
            elif op == OP_CHANNEL:
                self._channel(body)
            elif op == OP_STATISTICS:
                statistics = body
            elif op == OP_CHUNK_INDEX:
                start, _, offset, _ = struct.unpack_from("<QQQQ", body, 0)
                channels, _ = _map(body, 32, "<HQ")
                self._chunk_channels[offset] = set(channels)
            elif op == OP_METADATA_INDEX:
                offset, _ = struct.unpack_from("<QQ", body, 0)
                if _string(body, 16)[0] == "rosbag2":
                    metadata_offsets.append(offset)
        if statistics is None:
            return False
        count, _, channel_count, _, _, _, self.start_ns, self.end_ns = struct.unpack_from("<QHIIIIQQ", statistics, 0)
        counts, _ = _map(statistics, 42, "<HQ")
        if sum(counts.values()) != count:
            return False  # per-channel counts missing or inconsistent: count by reading
        self._data_end = summary_start
        wanted = {cid for cid, n in counts.items() if n} | {c for cs in self._chunk_channels.values() for c in cs}
        self._definitions(wanted, channel_count)
        for channel in self.channels.values():
            _resolve(channel, self._schemas)
        for cid, n in counts.items():
            if cid in self.channels:
                self.channels[cid].count = n
        if count == 0:
            self.start_ns = self.end_ns = 0
        for offset in metadata_offsets:
            self._metadata_record(offset)
        return True

    def _missing(self, wanted: set[int], channel_count: int) -> bool:
        """Whether channels (those with messages, or fewer than the statistics count) or their schemas are unknown."""
        return (len(self.channels) < channel_count or not wanted <= set(self.channels)
                or any(c.schema_id and c.schema_id not in self._schemas for c in self.channels.values()))

    def _definitions(self, wanted: set[int], channel_count: int) -> None:
        """Read the data section's Schema and Channel records (in chunks too) until none is missing.

        The summary may leave them out (the spec makes their copies there optional): they are then
        only in the data section, each before the first message that uses it. Stops as soon as
        every channel and schema is known, so a file that defines them early is barely read.
        """
        if not self._missing(wanted, channel_count):
            return
        bio, pos = self._bio, self._data_start
        bio.seek(pos)
        while pos + 9 <= self._data_end and self._missing(wanted, channel_count):
            op, length = RECORD.unpack(bio.read(9))
            if op in (OP_DATA_END, OP_FOOTER) or pos + 9 + length > self._data_end:
                return
            pos += 9 + length
            if op not in (OP_SCHEMA, OP_CHANNEL, OP_CHUNK):
                bio.seek(pos)
                continue
            body = memoryview(bio.read(length))
            if op != OP_CHUNK:
                self._record_definitions(op, body)
                continue
            _, _, size, _ = CHUNK_HEAD.unpack_from(body, 0)
            compression, at = _string(body, CHUNK_HEAD.size)
            data = body[at + 8:at + 8 + U64.unpack_from(body, at)[0]]
            if compression:
                data = memoryview(_decompress(data, compression, size))
            for inner, record, _ in _split_records(data):
                self._record_definitions(inner, record)

    def _record_definitions(self, op: int, body: memoryview) -> None:
        if op == OP_SCHEMA:
            self._schema(body)
        elif op == OP_CHANNEL:
            self._channel(body)

    def _metadata_record(self, offset: int) -> None:
        self._bio.seek(offset)
        op, length = RECORD.unpack(self._bio.read(9))
        if op == OP_METADATA:
            body = self._bio.read(length)
            _, pos = _string(body, 0)
            values, _ = _map(body, pos, None)
            self.rosbag2_metadata = values.get("serialized_metadata")

    def _schema(self, body: bytes | memoryview) -> None:
        sid = U16.unpack_from(body, 0)[0]
        if sid == 0 or sid in self._schemas:  # 0 is invalid (the spec: ignore it); later copies are the same
            return
        name, pos = _string(body, 2)
        encoding, pos = _string(body, pos)
        size = U32.unpack_from(body, pos)[0]
        self._schemas[sid] = (name, encoding, bytes(body[pos + 4:pos + 4 + size]).decode("utf-8", "replace"))
        for channel in self.channels.values():  # a channel read before its schema (the summary's, say)
            if channel.schema_id == sid and channel.schema is None:
                _resolve(channel, self._schemas)

    def _channel(self, body: bytes | memoryview) -> None:
        cid, sid = struct.unpack_from("<HH", body, 0)
        if cid in self.channels:
            return
        topic, pos = _string(body, 4)
        encoding, pos = _string(body, pos)
        metadata, _ = _map(body, pos, None)
        channel = self.channels[cid] = Channel(cid, topic, "", encoding, metadata, schema_id=sid)
        _resolve(channel, self._schemas)

    def _scan(self) -> None:
        """No summary: walk the whole file, registering channels and counting complete messages."""
        counts: dict[int, int] = defaultdict(int)
        start, end = 2**63 - 1, 0
        for cid, stamp, _ in self._walk(None, counting=True):
            counts[cid] += 1
            start, end = min(start, stamp), max(end, stamp)
        for cid, n in counts.items():
            if cid in self.channels:
                self.channels[cid].count = n
        self.recovered = sum(counts.values())
        self.start_ns, self.end_ns = (start, end) if self.recovered else (0, 0)

    def messages(self, channels: set[int] | None = None) -> Iterator[tuple[int, int, bytes]]:
        """(channel id, log time ns, serialized data) of every message, in file order; ``None``: all channels."""
        return self._walk(channels, counting=False)

    def _walk(self, wanted: set[int] | None, counting: bool) -> Iterator[tuple[int, int, bytes]]:
        """Messages in file order; ``counting``: the first (scanning) pass, which notes where the file is cut."""
        bio = self._bio
        bio.seek(self._data_start)
        pos, end = self._data_start, self._data_end
        self._good = pos
        while pos < end:
            head = bio.read(9)
            if len(head) < 9:
                break  # cut inside a record's opcode and length
            op, length = RECORD.unpack(head)
            if op in (OP_DATA_END, OP_FOOTER):
                return  # the data section ends here, as it should
            available = end - pos - 9
            skip = op not in (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK) or (
                op == OP_CHUNK and wanted is not None and pos in self._chunk_channels
                and not self._chunk_channels[pos] & wanted)  # an indexed chunk without a wanted channel
            if skip and length <= available:
                bio.seek(length, 1)
                pos += 9 + length
                continue
            body = bio.read(min(length, available))
            if len(body) < length:  # cut inside this record
                if op == OP_CHUNK:  # an uncompressed chunk still holds the messages written before the cut
                    yield from self._chunk_messages(body, wanted, partial=True, offset=pos + 9)
                break
            pos += 9 + length
            self._good = pos
            if op == OP_CHUNK:
                yield from self._chunk_messages(body, wanted, partial=False)
            else:
                yield from self._record_messages(op, memoryview(body), wanted)
        if counting and pos < self._size:
            self.cut_at = self._good

    def _chunk_messages(self, body: bytes, wanted: set[int] | None, partial: bool = False,
                        offset: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Messages of a chunk; ``partial``: one cut short at file offset ``offset`` + len(body)."""
        if len(body) < CHUNK_HEAD.size + 4:
            return
        _, _, size, _ = CHUNK_HEAD.unpack_from(body, 0)
        compression, pos = _string(body, CHUNK_HEAD.size)
        if pos + 8 > len(body) or (partial and compression):
            return  # a compressed chunk cut short cannot be decompressed
        compressed = U64.unpack_from(body, pos)[0]
        data = memoryview(body)[pos + 8:pos + 8 + compressed]
        if compression:
            data = memoryview(_decompress(data, compression, size))
        for op, record, end in _split_records(data):
            yield from self._record_messages(op, record, wanted)
            if partial:
                self._good = offset + pos + 8 + end

    def _record_messages(self, op: int, body: memoryview, wanted: set[int] | None) -> Iterator[tuple[int, int, bytes]]:
        if op == OP_MESSAGE:
            if len(body) >= MESSAGE.size:
                cid, _, stamp, _ = MESSAGE.unpack_from(body, 0)
                if wanted is None or cid in wanted:
                    yield cid, stamp, body[MESSAGE.size:]
        elif op == OP_SCHEMA:
            self._schema(body)
        elif op == OP_CHANNEL:
            self._channel(body)


def _split_records(data: memoryview) -> Iterator[tuple[int, memoryview, int]]:
    """Yield the complete records in a run of records, and where each ends (a cut one at the end is left out)."""
    pos, end = 0, len(data)
    while pos + 9 <= end:
        op, length = RECORD.unpack_from(data, pos)
        if pos + 9 + length > end:
            return
        yield op, data[pos + 9:pos + 9 + length], pos + 9 + length
        pos += 9 + length


def _string(data: bytes | memoryview, pos: int) -> tuple[str, int]:
    size = U32.unpack_from(data, pos)[0]
    return bytes(data[pos + 4:pos + 4 + size]).decode("utf-8", "replace"), pos + 4 + size


def _map(data: bytes | memoryview, pos: int, fmt: str | None) -> tuple[dict, int]:
    """Read an MCAP map: of fixed-size (key, value) pairs in ``fmt``, or of strings when ``fmt`` is None."""
    size = U32.unpack_from(data, pos)[0]
    pos += 4
    end, out = pos + size, {}
    while pos < end:
        if fmt is None:
            key, pos = _string(data, pos)
            value, pos = _string(data, pos)
        else:
            key, value = struct.unpack_from(fmt, data, pos)
            pos += struct.calcsize(fmt)
        out[key] = value
    return out, end


def _decompress(data: memoryview, compression: str, size: int) -> bytes:
    if compression == "zstd":
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd
        return zstd.decompress(bytes(data))
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(bytes(data))
    raise McapError(f"chunks compressed with {compression!r} cannot be read (zstd, lz4 and none can)")


def _pack_string(text: str) -> bytes:
    raw = text.encode()
    return U32.pack(len(raw)) + raw


def _pack_map(values: dict[str, str]) -> bytes:
    body = b"".join(_pack_string(k) + _pack_string(v) for k, v in values.items())
    return U32.pack(len(body)) + body


def _record(op: int, body: bytes) -> bytes:
    return RECORD.pack(op, len(body)) + body


class McapWriter:
    """A ros2-profile MCAP written in small chunks, each on disk (flushed and synced) once complete.

    A chunk is written when it holds ``chunk_size`` bytes or ``flush_period_s`` after its first
    message (call ``tick`` from a timer so that a quiet stream is written too). Killed at any
    moment, the file keeps every message of the chunks written so far; ``McapFile`` reads it.
    """

    def __init__(self, path: str | os.PathLike, chunk_size: int = 256 * 1024, flush_period_s: float = 0.5,
                 sync: bool = True, library: str = "liquid_pilot"):
        self.path = Path(path)
        self.chunk_size, self.flush_period_s, self.sync = chunk_size, flush_period_s, sync
        self._file = open(self.path, "xb")  # noqa: SIM115 (closed by close()); never overwrites
        self._write(MAGIC + _record(OP_HEADER, _pack_string("ros2") + _pack_string(library)))
        self._schemas: dict[str, tuple[int, bytes]] = {}
        self._channels: dict[int, bytes] = {}
        self._chunk = bytearray()
        self._chunk_first = 0.0  # monotonic time of the pending chunk's first message
        self._chunk_span = [2**63 - 1, 0]
        self._chunk_index: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self._chunk_indexes: list[bytes] = []
        self.counts: dict[int, int] = {}
        self.start_ns, self.end_ns = 2**63 - 1, 0
        self.closed = False

    def _write(self, data: bytes) -> None:
        self._file.write(data)

    def add_schema(self, name: str, encoding: str, text: str) -> int:
        if name not in self._schemas:
            sid = len(self._schemas) + 1
            record = _record(OP_SCHEMA, U16.pack(sid) + _pack_string(name) + _pack_string(encoding)
                             + U32.pack(len(text.encode())) + text.encode())
            self._schemas[name] = (sid, record)
            self._chunk += record
        return self._schemas[name][0]

    def add_channel(self, topic: str, schema_id: int, encoding: str = "cdr",
                    metadata: dict[str, str] | None = None) -> int:
        cid = len(self._channels) + 1
        record = _record(OP_CHANNEL, struct.pack("<HH", cid, schema_id) + _pack_string(topic)
                         + _pack_string(encoding) + _pack_map(metadata or {}))
        self._channels[cid] = record
        self.counts[cid] = 0
        self._chunk += record
        return cid

    def write(self, channel: int, log_time: int, data: bytes | memoryview) -> None:
        if not self._chunk_index:
            self._chunk_first = time.monotonic()
        self._chunk_index[channel].append((log_time, len(self._chunk)))
        self._chunk += _record(OP_MESSAGE, MESSAGE.pack(channel, self.counts[channel], log_time, log_time)
                               + bytes(data))
        self.counts[channel] += 1
        span = self._chunk_span
        span[0], span[1] = min(span[0], log_time), max(span[1], log_time)
        self.start_ns, self.end_ns = min(self.start_ns, log_time), max(self.end_ns, log_time)
        if len(self._chunk) >= self.chunk_size:
            self.flush()

    def tick(self) -> bool:
        """Write the pending chunk if its first message is ``flush_period_s`` old; return whether it did."""
        if self._chunk_index and time.monotonic() - self._chunk_first >= self.flush_period_s:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write the pending chunk (and its message indexes), flush it and sync it to the disk."""
        if self._chunk:
            start, end = self._chunk_span if self._chunk_index else (0, 0)
            offset = self._file.tell()
            body = CHUNK_HEAD.pack(start, end, len(self._chunk), 0) + _pack_string("") \
                + U64.pack(len(self._chunk)) + bytes(self._chunk)
            self._write(_record(OP_CHUNK, body))
            chunk_length = self._file.tell() - offset
            index_offsets = []
            for cid, entries in self._chunk_index.items():
                index_offsets.append((cid, self._file.tell()))
                pairs = b"".join(struct.pack("<QQ", t, o) for t, o in entries)
                self._write(_record(OP_MESSAGE_INDEX, U16.pack(cid) + U32.pack(len(pairs)) + pairs))
            index_length = self._file.tell() - offset - chunk_length
            offsets = b"".join(struct.pack("<HQ", c, o) for c, o in index_offsets)
            self._chunk_indexes.append(_record(OP_CHUNK_INDEX, struct.pack("<QQQQ", start, end, offset, chunk_length)
                                               + U32.pack(len(offsets)) + offsets + U64.pack(index_length)
                                               + _pack_string("") + U64.pack(len(self._chunk))
                                               + U64.pack(len(self._chunk))))
            self._chunk = bytearray()
            self._chunk_index = defaultdict(list)
            self._chunk_span = [2**63 - 1, 0]
        self._file.flush()
        if self.sync:
            os.fsync(self._file.fileno())

    def close(self, rosbag2_metadata: str | None = None) -> None:
        """Write what is pending and the summary (schemas, channels, chunk indexes, statistics) and footer."""
        if self.closed:
            return
        self.flush()
        self._write(_record(OP_DATA_END, U32.pack(0)))
        metadata_index = b""
        if rosbag2_metadata is not None:
            offset = self._file.tell()
            record = _record(OP_METADATA, _pack_string("rosbag2")
                             + _pack_map({"serialized_metadata": rosbag2_metadata}))
            self._write(record)
            metadata_index = _record(OP_METADATA_INDEX, struct.pack("<QQ", offset, len(record))
                                     + _pack_string("rosbag2"))
        summary_start = self._file.tell()
        groups = []
        for op, records in ((OP_SCHEMA, [r for _, r in self._schemas.values()]),
                            (OP_CHANNEL, list(self._channels.values())), (OP_CHUNK_INDEX, self._chunk_indexes),
                            (OP_METADATA_INDEX, [metadata_index] if metadata_index else [])):
            if records:
                groups.append((op, self._file.tell()))
                self._write(b"".join(records))
                groups[-1] = (op, groups[-1][1], self._file.tell() - groups[-1][1])
        count = sum(self.counts.values())
        start, end = (self.start_ns, self.end_ns) if count else (0, 0)
        counts = b"".join(struct.pack("<HQ", c, n) for c, n in sorted(self.counts.items()))
        statistics_offset = self._file.tell()
        self._write(_record(OP_STATISTICS, struct.pack("<QHIIIIQQ", count, len(self._schemas), len(self._channels),
                                                       0, 1 if metadata_index else 0, len(self._chunk_indexes),
                                                       start, end) + U32.pack(len(counts)) + counts))
        groups.append((OP_STATISTICS, statistics_offset, self._file.tell() - statistics_offset))
        summary_offset_start = self._file.tell()
        for op, offset, length in groups:
            self._write(_record(OP_SUMMARY_OFFSET, U8.pack(op) + struct.pack("<QQ", offset, length)))
        self._write(_record(OP_FOOTER, struct.pack("<QQI", summary_start, summary_offset_start, 0)) + MAGIC)
        self._file.flush()
        if self.sync:
            os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True

    def abandon(self) -> None:
        """Close the file as it is (no summary), keeping every chunk written so far."""
        if not self.closed:
            self._file.close()
            self.closed = True
