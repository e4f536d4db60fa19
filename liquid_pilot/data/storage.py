"""Bags of every kind, opened alike: topics, message counts and messages in the order they were written.

Read: rosbag2 bag folders (MCAP or sqlite3 files, with or without ``metadata.yaml``), bare ``.mcap``
and ``.db3`` files, and ROS 1 ``.bag`` files. MCAP files without a summary (a recorder killed
or a file cut short) are scanned and every complete message recovered (``data.mcap``). Messages
come in file order, so a clock that stepped back is seen, never sorted across. What the reader
had to do (a missing ``metadata.yaml``, a recovered file) is said in ``Bag.notes``, and what a
folder holds that is not read is listed by ``find_bags``: nothing is skipped silently.
``reindex`` writes a bag folder's ``metadata.yaml`` back from its files, like ``ros2 bag reindex``.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rosbags.interfaces import Qos

from liquid_pilot.data.mcap import McapError, McapFile
from liquid_pilot.flight.codec import TYPESTORE

STORAGES = {".mcap": "mcap", ".db3": "sqlite3"}  # rosbag2 storage files by suffix
ROS1_SUFFIX = ".bag"
METADATA = "metadata.yaml"
METADATA_VERSION = 9
_ROS1_TYPESTORE = None


class BagError(ValueError):
    """A bag that cannot be used; the message names the bag and the problem (and the fix, where there is one)."""

    def __init__(self, bag: str | Path, problem: str):
        super().__init__(f"{bag}: {problem}")


@dataclass
class Topic:
    """A topic of a bag: its name, message type, count, encoding and the QoS it was offered with."""

    name: str
    msgtype: str
    count: int = 0
    encoding: str = "cdr"  # cdr: ROS 2 messages; ros1: ROS 1 messages
    # Offered QoS profiles as recorded: rosbags Qos, or the YAML text (or list) rosbag2 stores, parsed when read.
    offered: object = None
    digest: str = ""  # the type's hash (RIHS01), where stored

    @property
    def qos(self) -> list:
        """The offered QoS profiles (rosbags Qos); parsed on first use: only the player needs them."""
        if not (isinstance(self.offered, list) and all(isinstance(q, Qos) for q in self.offered)):
            self.offered = _parse_qos(self.offered)
        return self.offered


def _ros1_typestore() -> Any:
    global _ROS1_TYPESTORE
    if _ROS1_TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _ROS1_TYPESTORE = get_typestore(Stores.ROS1_NOETIC)
    return _ROS1_TYPESTORE


def _parse_qos(value: object) -> list:
    from rosbags.rosbag2.metadata import parse_qos

    if isinstance(value, list) and all(isinstance(q, Qos) for q in value):
        return value
    try:
        return parse_qos(value) if value else []
    except Exception:  # a QoS we cannot parse only changes how the player publishes
        return []


class _Source:
    """One storage file: its topics (with counts), time span and messages in file order."""

    path: Path
    topics: dict[str, Topic]
    start_ns: int = 0
    end_ns: int = 0
    count: int = 0
    notes: list[str]
    custom_data: dict[str, str]

    def messages(self, names: set[str]) -> Iterator[tuple[str, int, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _McapSource(_Source):
    def __init__(self, path: Path, label: Path):
        self.path, self.notes, self._custom = path, [], None
        self.file = McapFile(path)
        try:
            self.file.open()
        except (McapError, OSError) as exc:
            raise BagError(label, str(exc)) from None
        f = self.file
        self.topics, self._ids = {}, {}
        for channel in f.channels.values():
            topic = self.topics.get(channel.topic)
            if topic is None:
                topic = self.topics[channel.topic] = Topic(channel.topic, channel.msgtype, 0, channel.encoding,
                                                           channel.metadata.get("offered_qos_profiles"))
            elif topic.msgtype != channel.msgtype:
                raise BagError(label, f"topic {channel.topic} has two types, {topic.msgtype} and {channel.msgtype}")
            topic.count += channel.count
            self._ids.setdefault(channel.topic, set()).add(channel.id)
        self.start_ns, self.end_ns = f.start_ns, f.end_ns
        self.count = sum(t.count for t in self.topics.values())
        if not f.indexed and f.complete:  # closed, but written without a summary (or one without statistics)
            self.notes.append(f"{path.name} is complete but has no index (its writer left the summary out): read "
                              f"by scanning, {f.recovered} messages")
        elif not f.indexed:
            size = path.stat().st_size
            where = (f"; its last {size - f.cut_at:,} of {size:,} bytes are a record cut short, left out"
                     if f.cut_at is not None else "")
            self.notes.append(f"{path.name} has no index (the recording was cut or not closed): "
                              f"{f.recovered} complete messages recovered{where}")

    @property
    def custom_data(self) -> dict[str, str]:
        """The custom data rosbag2 keeps inside the file (parsed on first use), or {}."""
        if self._custom is None:
            self._custom = {}
            if self.file.rosbag2_metadata:
                try:
                    info = yaml.load(self.file.rosbag2_metadata, Loader=yaml.CSafeLoader) or {}
                    self._custom = {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}
                except (yaml.YAMLError, AttributeError):
                    pass
        return self._custom

    def messages(self, names: set[str]) -> Iterator[tuple[str, int, bytes]]:
        channels = self.file.channels
        ids = set().union(*(self._ids.get(n, set()) for n in names)) if names else set()
        for cid, stamp, data in self.file.messages(ids):
            yield channels[cid].topic, stamp, data

    def close(self) -> None:
        self.file.close()


class _SqliteSource(_Source):
    """A rosbag2 sqlite3 file, opened so that nothing is ever written next to it (see ``_connect``)."""

    def __init__(self, path: Path, label: Path):
        self.path, self.notes, self.custom_data = path, [], {}
        self._copy: tempfile.TemporaryDirectory | None = None
        try:
            self.db = self._connect(path)
            cursor = self.db.execute("SELECT * FROM topics")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, row)) for row in cursor]
            stats = {r[0]: r[1:] for r in self.db.execute(
                "SELECT topic_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages GROUP BY topic_id")}
        except sqlite3.Error as exc:
            raise BagError(label, f"not a readable sqlite3 bag (truncated or corrupted?): {exc}") from None
        self.topics, self._ids = {}, {}
        for row in rows:
            count, _, _ = stats.get(row["id"], (0, 0, 0))
            self.topics[row["name"]] = Topic(row["name"], row["type"], count,
                                             "cdr" if row.get("serialization_format", "cdr") == "cdr"
                                             else row["serialization_format"],
                                             row.get("offered_qos_profiles"), row.get("type_description_hash") or "")
            self._ids[row["name"]] = row["id"]
        spans = [s for s in stats.values() if s[0]]
        self.start_ns = min((s[1] for s in spans), default=0)
        self.end_ns = max((s[2] for s in spans), default=0)
        self.count = sum(s[0] for s in stats.values())

    def _connect(self, path: Path) -> sqlite3.Connection:
        """Open the file read-only, never writing beside it.

        A WAL-mode database (rosbag2's default since Iron) opened with ``mode=ro`` still creates
        ``-shm`` and ``-wal`` files and leaves them there, so it is opened ``immutable``: nothing
        is created or locked. When a ``-wal`` file holds writes not yet checkpointed into the
        database (a recorder killed), the two files are copied to a temporary folder and read
        there, writes included. A rollback-journal database opens ``mode=ro``; one with a hot
        journal, which would need writing to roll back, opens ``immutable`` as it is.
        """
        wal = path.with_name(path.name + "-wal")
        if _wal_mode(path):
            if wal.is_file() and wal.stat().st_size > 0:
                self._copy = tempfile.TemporaryDirectory(prefix="liquid_pilot_db3_")
                copy = Path(self._copy.name) / path.name
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
                self.notes.append(f"{path.name}-wal holds writes not yet in {path.name} (a recorder stopped before "
                                  f"closing it): read from a copy with them, the bag left as it is")
                return sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
            return sqlite3.connect(f"{_uri(path)}?immutable=1", uri=True)
        db = sqlite3.connect(f"{_uri(path)}?mode=ro", uri=True)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:  # a journal left by a killed writer needs writing to roll back
            db.close()
            return sqlite3.connect(f"{_uri(path)}?immutable=1", uri=True)

    def messages(self, names: set[str]) -> Iterator[tuple[str, int, bytes]]:
        ids = {self._ids[n]: n for n in names if n in self._ids}
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        for topic_id, stamp, data in self.db.execute(
                f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({marks}) ORDER BY id", list(ids)):
            yield ids[topic_id], stamp, data

    def close(self) -> None:
        self.db.close()
        if self._copy is not None:
            self._copy.cleanup()
            self._copy = None


def _wal_mode(path: Path) -> bool:
    """Whether a sqlite3 database file is in WAL mode (its header's read and write versions are 2)."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"


def _uri(path: Path) -> str:
    """Return a file: URI for sqlite3 (characters special in URIs escaped)."""
    from urllib.parse import quote

    return "file:" + quote(str(path.absolute()))


class _Ros1Source(_Source):
    def __init__(self, path: Path, label: Path):
        from rosbags.rosbag1 import Reader, ReaderError

        self.path, self.notes, self.custom_data = path, [], {}
        self.reader = Reader(path)
        try:
            self.reader.open()
        except ReaderError as exc:
            fix = "; run `rosbag reindex` on it" if "index" in str(exc).lower() else ""
            raise BagError(label, f"not a readable ROS 1 bag: {exc}{fix}") from None
        self.topics = {name: Topic(name, info.msgtype or "", info.msgcount, "ros1")
                       for name, info in self.reader.topics.items()}
        self.count = self.reader.message_count
        self.start_ns, self.end_ns = (self.reader.start_time, self.reader.end_time - 1) if self.count else (0, 0)

    def messages(self, names: set[str]) -> Iterator[tuple[str, int, bytes]]:
        connections = [c for c in self.reader.connections if c.topic in names]
        if connections:
            for connection, stamp, data in self.reader.messages(connections=connections):
                yield connection.topic, stamp, data

    def close(self) -> None:
        self.reader.close()


def _open_source(path: Path, label: Path) -> _Source:
    if path.suffix == ".mcap":
        return _McapSource(path, label)
    if path.suffix == ".db3":
        return _SqliteSource(path, label)
    return _Ros1Source(path, label)


def _split_number(path: Path) -> tuple:
    """Sort key: NAME_2 before NAME_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def is_bag_file(path: Path) -> bool:
    return path.is_file() and (path.suffix in STORAGES or path.suffix == ROS1_SUFFIX)


NUMBERED = re.compile(r"(.+)_(\d+)\.(mcap|db3)")


def rosbag2_files(folder: Path) -> list[Path]:
    """Return the storage files of a rosbag2 folder without metadata.yaml read as one bag; [] if it is not one.

    The rule (``bag info``, ``train`` and ``bag reindex`` alike): the folder is one bag when it
    holds FOLDER_N.mcap or .db3 files (rosbag2's naming) or FOLDER.mcap (rosbags'), or else when
    all its storage files are the numbered parts of one name as rosbag2 splits a bag, NAME_0,
    NAME_1 ... NAME_K with one suffix, numbered from 0 without a gap (a bag folder that was
    renamed). Otherwise its files are bags of their own (flight_1.mcap, flight_2.mcap ... too).
    """
    try:
        storage = [p for p in folder.iterdir() if p.suffix in STORAGES and p.is_file()]
    except OSError:
        return []
    pattern = re.compile(re.escape(folder.name) + r"(_\d+)?\.(mcap|db3)")
    files = [p for p in storage if pattern.fullmatch(p.name)]
    if not files and storage:
        matches = [NUMBERED.fullmatch(p.name) for p in storage]
        if all(matches) and len({m.group(1, 3) for m in matches}) == 1 \
                and sorted(int(m.group(2)) for m in matches) == list(range(len(matches))):
            files = storage
    return sorted(files, key=_split_number)


def is_bag_folder(path: Path) -> bool:
    return path.is_dir() and ((path / METADATA).is_file() or bool(rosbag2_files(path)))


class Bag:
    """One bag of any kind, opened for reading (use ``with open_bag(path) as bag``)."""

    def __init__(self, path: Path, kind: str, sources: list[_Source], notes: list[str],
                 custom_data: dict[str, str], compression: str | None = None, cleanup: Any = None):
        self.path, self.kind, self.sources, self.compression = path, kind, sources, compression
        self.notes = notes + [n for s in sources for n in s.notes]
        self.custom_data = dict(custom_data)
        if not custom_data:  # a rosbag2 bag without metadata.yaml, or a bare file: what its files keep
            for source in sources:
                for key, value in source.custom_data.items():
                    self.custom_data.setdefault(key, value)
        self._cleanup = cleanup
        self.topics: dict[str, Topic] = {}
        for source in sources:
            for name, topic in source.topics.items():
                known = self.topics.get(name)
                if known is None:
                    self.topics[name] = Topic(topic.name, topic.msgtype, topic.count, topic.encoding, topic.offered,
                                              topic.digest)
                elif known.msgtype != topic.msgtype:
                    self.close()
                    raise BagError(path, f"topic {name} has type {known.msgtype} in one file and {topic.msgtype} "
                                         f"in {source.path.name}")
                else:
                    known.count += topic.count
        spans = [(s.start_ns, s.end_ns) for s in sources if s.count]
        self.start_ns = min((a for a, _ in spans), default=0)
        self.end_ns = max((b for _, b in spans), default=0)
        self.recovered = any(isinstance(s, _McapSource) and not s.file.indexed and not s.file.complete
                             for s in sources)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.sources]

    def messages(self, names: Iterable[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, serialized message) of these topics, in the order they were written."""
        names = set(names)
        for source in self.sources:
            if self.compression == "message":
                from liquid_pilot.data.mcap import _decompress

                for topic, stamp, data in source.messages(names):
                    yield topic, stamp, _decompress(memoryview(data), "zstd", 0)
            else:
                yield from source.messages(names)

    def decode(self, topic: str, data: bytes | memoryview) -> Any:
        """Decode one serialized message of ``topic`` (ROS 2 CDR or ROS 1)."""
        info = self.topics[topic]
        if info.encoding == "ros1":
            return _ros1_typestore().deserialize_ros1(bytes(data), info.msgtype)
        return TYPESTORE.deserialize_cdr(data, info.msgtype)

    def close(self) -> None:
        for source in self.sources:
            source.close()
        self.sources = []
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metadata(folder: Path) -> dict[str, Any]:
    """Return the ``rosbag2_bagfile_information`` of a bag folder's metadata.yaml, or raise BagError."""
    try:
        info = yaml.load((folder / METADATA).read_text(), Loader=yaml.CSafeLoader)["rosbag2_bagfile_information"]
        if not isinstance(info, dict):
            raise TypeError("not a mapping")
        return info
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(folder, f"unreadable {METADATA} ({exc}); liquid-pilot bag reindex {folder} writes it "
                               f"again from the bag's files") from None


def open_bag(path: str | Path) -> Bag:
    """Open a bag folder or file for reading, or raise BagError naming it, the problem and the fix."""
    path = Path(path)
    if not path.exists():
        raise BagError(path, "no such bag, file or folder")
    if path.is_file():
        if not is_bag_file(path):
            raise BagError(path, f"not a bag: liquid_pilot reads .mcap, .db3 and ROS 1 .bag files and rosbag2 "
                                 f"folders{_unread_reason(path, suffix_only=True)}")
        kind = {".mcap": "MCAP file", ".db3": "sqlite3 file"}.get(path.suffix, "ROS 1 bag")
        return Bag(path, kind, [_open_source(path, path)], [], {})
    if (path / METADATA).is_file():
        return _open_with_metadata(path)
    files = rosbag2_files(path)
    if not files:
        raise BagError(path, "not a bag: no metadata.yaml, and its storage files are not the numbered parts of one "
                             f"bag ({path.name}_0.mcap or NAME_0.mcap, NAME_1.mcap ...); name a bag file, or a "
                             f"folder of bags")
    notes = [f"no {METADATA}: read from its files; liquid-pilot bag reindex {path} writes it"]
    notes += _unread_in_bag(path, set(files))
    kinds = {STORAGES[f.suffix] for f in files}
    return Bag(path, f"rosbag2 ({'/'.join(sorted(kinds))})", _open_all(files, path), notes, {})


def _open_all(files: list[Path], label: Path) -> list[_Source]:
    sources: list[_Source] = []
    try:
        for file in files:
            sources.append(_open_source(file, label))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def _open_with_metadata(path: Path) -> Bag:
    info = read_metadata(path)
    storage = info.get("storage_identifier", "")
    if storage not in STORAGES.values():
        raise BagError(path, f"storage {storage!r} cannot be read (mcap and sqlite3 can)")
    mode = (info.get("compression_mode") or "").lower()
    mode = "" if mode == "none" else mode
    if mode and (info.get("compression_format") or "zstd") != "zstd":
        raise BagError(path, f"compression {info.get('compression_format')!r} cannot be read (zstd can)")
    listed = [path / Path(p).name for p in info.get("relative_file_paths") or []]
    missing = [p.name for p in listed if not p.is_file()]
    if missing:
        raise BagError(path, f"{METADATA} lists {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                             f"missing; if the bag's files were renamed, liquid-pilot bag reindex {path} "
                             f"writes {METADATA} for the files there")
    notes = []
    extra = [f for f in rosbag2_files(path) if f not in listed] if not mode else []
    if extra:
        notes.append(f"{', '.join(f.name for f in extra)} not listed in {METADATA} (cut while recording?): read too; "
                     f"liquid-pilot bag reindex {path} updates it")
    files = listed + extra
    notes += _unread_in_bag(path, set(files))
    cleanup = None
    if mode == "file":
        tmp = tempfile.TemporaryDirectory(prefix="liquid_pilot_bag_")
        cleanup = tmp.cleanup
        try:
            files = [_decompressed(f, Path(tmp.name)) for f in files]
        except Exception as exc:
            tmp.cleanup()
            raise BagError(path, f"cannot decompress its files: {exc}") from None
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"].get("offered_qos_profiles")
           for t in info.get("topics_with_message_count") or [] if isinstance(t, dict) and "topic_metadata" in t}
    try:
        sources = _open_all(files, path)
    except BaseException:
        if cleanup is not None:
            cleanup()
        raise
    for source in sources:  # the QoS as the metadata has it, where the files do not say
        for name, topic in source.topics.items():
            if not topic.offered and qos.get(name):
                topic.offered = qos[name]
    custom = {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}
    return Bag(path, f"rosbag2 ({storage})", sources, notes, custom, "message" if mode == "message" else None,
               cleanup)


def _decompressed(file: Path, folder: Path) -> Path:
    try:
        from compression import zstd  # Python 3.14
    except ImportError:
        from backports import zstd
    out = folder / file.name.removesuffix(".zstd")
    with zstd.open(file, "rb") as src, open(out, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    return out


def _unread_in_bag(folder: Path, read: set[Path]) -> list[str]:
    unread = [p for p in sorted(folder.iterdir()) if p not in read and p.name != METADATA
              and not p.name.endswith(".zstd")]
    return [f"not read: {p.name}{_unread_reason(p)}" for p in unread]


def _unread_reason(path: Path, suffix_only: bool = False) -> str:
    name = path.name
    if name.endswith(".bag.active"):
        return " (an unfinished ROS 1 bag: run `rosbag reindex` on it, then rename it to .bag)"
    if suffix_only:
        return ""
    if name.startswith("."):
        return " (hidden)"
    if path.is_dir():
        return " (a folder without a bag: bags are read one level down)"
    return " (not a bag file: .mcap, .db3 and .bag are read)"


def find_bags(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Return the bags named, or inside the folders named (one level down, in name order), and what is not read.

    A bag is a rosbag2 folder, a .mcap, .db3 or ROS 1 .bag file. Returns the bags and one line
    for each thing in a named folder that is not read (with why); raises BagError for a path
    that is neither a bag nor a folder holding one.
    """
    bags: list[Path] = []
    unread: list[str] = []
    for path in map(Path, paths):
        if not path.exists():
            raise BagError(path, "no such bag, file or folder")
        if is_bag_file(path) or is_bag_folder(path):
            bags.append(path)
            continue
        if not path.is_dir():
            raise BagError(path, f"not a bag: liquid_pilot reads .mcap, .db3 and ROS 1 .bag files and rosbag2 "
                                 f"folders{_unread_reason(path, suffix_only=True)}")
        found, skipped = [], []
        for entry in sorted(path.iterdir(), key=_split_number):
            if not entry.name.startswith(".") and (is_bag_file(entry) or is_bag_folder(entry)):
                found.append(entry)
            else:
                skipped.append(f"{entry}: not read{_unread_reason(entry)}")
        if not found:
            what = f"; it holds {len(skipped)} other things: {'; '.join(s for s in skipped[:3])}" if skipped else ""
            raise BagError(path, f"no bags in this folder (rosbag2 folders, .mcap, .db3 or .bag files){what}")
        bags += found
        unread += skipped
    return bags, unread


def bag_files(path: Path) -> list[Path]:
    """Return the files a bag's contents live in (for cache keys): the bag file, or its folder's files."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file())


def metadata_for(files: list[tuple[str, int, int, int]], topics: list[Topic], storage: str,
                 custom_data: dict[str, str] | None = None) -> dict[str, Any]:
    """rosbag2 metadata (version 9) of a bag's files: (name, first ns, last ns, message count) each."""
    from rosbags.rosbag2.metadata import dump_qos_v9

    counted = [f for f in files if f[3]]
    start = min((f[1] for f in counted), default=0)
    end = max((f[2] for f in counted), default=0)

    def digest(topic: Topic) -> str:
        if topic.digest or topic.encoding != "cdr" or topic.msgtype not in TYPESTORE.fielddefs:
            return topic.digest
        return TYPESTORE.hash_rihs01(topic.msgtype)

    return {"rosbag2_bagfile_information": {
        "version": METADATA_VERSION,
        "storage_identifier": storage,
        "duration": {"nanoseconds": max(0, end - start)},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(f[3] for f in files),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.msgtype, "serialization_format": t.encoding,
                                "offered_qos_profiles": dump_qos_v9(t.qos), "type_description_hash": digest(t)},
             "message_count": t.count} for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [f[0] for f in files],
        "files": [{"path": name, "starting_time": {"nanoseconds_since_epoch": first if count else 0},
                   "duration": {"nanoseconds": max(0, last - first) if count else 0}, "message_count": count}
                  for name, first, last, count in files],
        "custom_data": dict(custom_data) if custom_data else None,
        "ros_distro": "liquid_pilot",
    }}


def write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    """Write metadata.yaml atomically: a reader sees the old one or the new one, never half of one."""
    tmp = folder / f".{METADATA}.{os.getpid()}.tmp"
    tmp.write_text(yaml.safe_dump(metadata, sort_keys=False))
    tmp.replace(folder / METADATA)


def reindex(folder: str | Path) -> dict[str, Any]:
    """Write a bag folder's metadata.yaml from its storage files; returns the metadata written.

    The files are those an existing metadata.yaml lists, and those ``rosbag2_files`` finds (the
    rule ``bag info`` reads such a folder by); its custom data is kept. MCAP files cut short are
    counted as far as they are complete.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BagError(folder, "reindex takes a rosbag2 bag folder (a bare .mcap, .db3 or .bag file needs no "
                               "metadata.yaml: it is read as it is)")
    custom: dict[str, str] = {}
    listed: list[Path] = []
    if (folder / METADATA).is_file():
        try:
            old = read_metadata(folder)
            custom = {str(k): str(v) for k, v in (old.get("custom_data") or {}).items()}
            listed = [folder / Path(p).name for p in old.get("relative_file_paths") or []]
        except BagError:
            pass  # unreadable: rebuilt from the files alone
    files = [p for p in listed if p.is_file()]
    files += [p for p in rosbag2_files(folder) if p not in files]
    if not files:
        storage = sorted((p.name for p in folder.iterdir() if p.is_file() and p.suffix in STORAGES),
                         key=lambda name: _split_number(Path(name)))
        if not storage:
            raise BagError(folder, "no storage files (.mcap or .db3) to index")
        raise BagError(folder, f"its storage files ({', '.join(storage[:4])}{', ...' if len(storage) > 4 else ''}) "
                               f"are not the numbered parts of one bag (NAME_0, NAME_1 ... of one name, from 0 "
                               f"without a gap), so they are bags of their own, read as they are: reindex takes "
                               f"one bag's folder")
    storages = {STORAGES.get(f.suffix) for f in files}
    if len(storages) != 1 or None in storages:
        raise BagError(folder, f"its files mix storages ({', '.join(f.name for f in files)}): one bag holds one")
    sources = _open_all(files, folder)
    bag = Bag(folder, f"rosbag2 ({storages.pop()})", sources, [], custom)
    try:
        stats = [(s.path.name, s.start_ns, s.end_ns, s.count) for s in sources]
        metadata = metadata_for(stats, list(bag.topics.values()), STORAGES[files[0].suffix], bag.custom_data)
    finally:
        bag.close()
    write_metadata(folder, metadata)
    return metadata
