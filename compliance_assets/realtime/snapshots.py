"""Snapshots of the decision service's per-partition state, each with the input offset it reflects.

A snapshot of (group, topic, partition) is the processor's serialised state after the events before
`next_offset`, so a new owner of the partition restores it and consumes from `next_offset`: the state
and the outputs replayed from there are the ones the previous owner had made (the processor is
deterministic). Snapshots are the source of truth for where a partition resumes; the group's committed
offsets only mirror them for lag monitoring.

Files: <root>/<group>/<topic>/<partition>/<next_offset, 20 digits>.snap, written to a temporary file
in the same folder and renamed into place (a reader never sees half a file, a crash leaves at most a
stray temporary file), the newest two kept. The newest is the one with the highest offset: two owners
racing during a rebalance can only write the same state for the same offset.

`SnapshotStore` is the local-filesystem store (a volume in the container); a cloud store (fsspec/adlfs for
abfss://) would implement the same `load`/`save`.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

SUFFIX = ".snap"
NAME = re.compile(r"^(\d{20})\.snap$")
KEEP = 2
BASE = "base.state"  # beside the partition folders: the state every partition starts from (first start)


class SnapshotStore:
    """Per-partition state snapshots on the local filesystem, named by their next input offset."""

    def __init__(self, root: str | os.PathLike, keep: int = KEEP, fsync: bool = True) -> None:
        self.root = Path(root)
        self.keep = max(1, keep)
        self.fsync = fsync  # off only for throwaway stores: a snapshot must survive a machine crash too

    def describe(self) -> str:
        """Where snapshots go, for logs."""
        return str(self.root)

    def _folder(self, group: str, topic: str, partition: int) -> Path:
        return self.root / _safe(group) / _safe(topic) / str(int(partition))

    def _offsets(self, folder: Path) -> list[int]:
        """The offsets of the folder's complete snapshots, ascending."""
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(NAME.match, names) if m)

    def load(self, group: str, topic: str, partition: int) -> tuple[int, bytes] | None:
        """The newest snapshot as (next_offset, data), or None if the partition has none."""
        folder = self._folder(group, topic, partition)
        for offset in reversed(self._offsets(folder)):
            try:
                return offset, (folder / f"{offset:020d}{SUFFIX}").read_bytes()
            except FileNotFoundError:  # pruned by another owner between listing and reading: take the next
                continue
        return None

    def save(self, group: str, topic: str, partition: int, next_offset: int, data: bytes) -> None:
        """Write the snapshot atomically, then drop all but the newest `keep`."""
        if next_offset < 0:
            raise ValueError(f"a snapshot needs a real input offset, got {next_offset}")
        folder = self._folder(group, topic, partition)
        self._write(folder, f"{next_offset:020d}{SUFFIX}", data)
        for old in self._offsets(folder)[: -self.keep]:
            try:
                (folder / f"{old:020d}{SUFFIX}").unlink()
            except FileNotFoundError:
                pass

    def load_base(self, group: str, topic: str) -> bytes | None:
        """The group's base state (what every partition starts from at first start), or None before it is saved."""
        try:
            return (self.root / _safe(group) / _safe(topic) / BASE).read_bytes()
        except FileNotFoundError:
            return None

    def save_base(self, group: str, topic: str, data: bytes) -> bytes:
        """Save the base state once; if another instance saved one first, keep and return that one."""
        existing = self.load_base(group, topic)
        if existing is not None:
            return existing
        self._write(self.root / _safe(group) / _safe(topic), BASE, data, exclusive=True)
        return self.load_base(group, topic)

    def _write(self, folder: Path, name: str, data: bytes, exclusive: bool = False) -> None:
        """Write a file atomically: a temporary file of this writer, fsynced, renamed into place (`exclusive`:
        linked into place only if no file of that name exists, so the first writer wins)."""
        folder.mkdir(parents=True, exist_ok=True)
        # unique per writer: two owners of a partition during a rebalance never share a temporary file
        temp = folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temp, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(temp, folder / name)
            except FileExistsError:
                pass
            os.unlink(temp)
        else:
            os.replace(temp, folder / name)
        if self.fsync:
            _fsync_dir(folder)

def _safe(name: str) -> str:
    """A group or topic name as one path component (Kafka names are [a-zA-Z0-9._-]; anything else escaped)."""
    if name in ("", ".", ".."):
        raise ValueError(f"not a usable group or topic name: {name!r}")
    return re.sub(r"[^A-Za-z0-9._-]", lambda m: f"%{ord(m.group(0)):02X}", name)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (the directory entry), where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
