"""A durable local spool for records that could not reach the database.

When the database is unreachable or hung, a question is still answered; what happened (the
exchange, a vote, an audit row) is appended here as one JSON line with its kind, flushed and
fsync'd before the call returns, and replayed once the database answers again (a background
task in ``serve``; the start of every command that opens the runtime). Replay is idempotent
(bot/store/replay.py): an exchange by its id, a vote by voter and time, an audit row by the
spool entry id it carries. So a record whose write did reach the database before the failure
was noticed (a lost commit reply, a hung call that finished late) is still written once.

An entry that cannot be applied yet (a vote or a thumbs-down whose exchange waits in another
instance's spool; a thumbs-down while this process cannot build its review) raises
``Deferred``: it stays in the spool, behind nothing, and is tried again with the next replay;
after ``DEFER_LIMIT`` it goes to ``failed.jsonl`` like any entry that cannot be applied.

Entries that cannot be applied for another reason (a bug, a constraint) are moved to
``failed.jsonl`` beside the spool and logged: never silently dropped. One file lock serialises
appends and replays across threads and processes sharing the data directory. Entries hold
question and answer text with their labels, so the directory and files are the process
owner's alone (0700 / 0600), like the database they stand in for.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger("concierge.store.spool")

KINDS = ("exchange", "vote", "audit", "review", "feedback")

# How long an entry may wait for what it depends on (its exchange, recorded by another
# instance that may itself be spooling) before it is set aside as failed.
DEFER_LIMIT = timedelta(days=1)


class Deferred(Exception):
    """Raised by an ``apply`` function: this entry cannot be written yet; keep it."""


class Spool:
    """Append-only JSON lines under ``directory``: ``{"id", "kind", "at", "data"}``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "spool.jsonl"
        self.failed_path = directory / "failed.jsonl"
        self._lock_path = directory / "spool.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(os.open(self._lock_path, os.O_WRONLY | os.O_CREAT, 0o600), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, kind: str, data: dict[str, Any], entry_id: str | None = None) -> str:
        """Write one entry durably; returns its id."""
        if kind not in KINDS:
            raise ValueError(f"unknown spool kind {kind!r}")
        entry = {
            "id": entry_id or str(uuid.uuid4()),
            "kind": kind,
            "at": datetime.now(UTC).isoformat(),
            "data": data,
        }
        line = json.dumps(entry, ensure_ascii=True, default=str) + "\n"
        with self._locked():
            _write(self.path, line, mode="a")
        log.warning("spooled a %s record (%s) until the database returns", kind, entry["id"])
        return str(entry["id"])

    def pending(self) -> int:
        """How many entries wait (0 when there is no spool file)."""
        try:
            with open(self.path, "rb") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    def replay(self, apply: Callable[[dict[str, Any]], None], stop: type[Exception]) -> int:
        """Apply every entry in order, each in its own transaction (``apply``). ``stop`` is
        the error that means the database went away again: that entry and the rest stay.
        Returns how many entries were applied."""
        with self._locked():
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return 0
            done = 0
            kept: list[str] = []  # deferred entries, tried again next time
            rest: list[str] = []  # the entry the database went away on, and those after it
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    apply(entry)
                    done += 1
                except stop:
                    rest = lines[i:]
                    break
                except Deferred as why:
                    if _age(entry) < DEFER_LIMIT:
                        kept.append(line)
                        continue
                    log.error(
                        "a spooled %s record waited too long (%s); kept in %s",
                        entry.get("kind"),
                        why,
                        self.failed_path,
                    )
                    _write(self.failed_path, line + "\n", mode="a")
                except Exception as exc:  # kept aside, never dropped
                    log.error(
                        "could not replay a spooled record (%s); kept in %s", exc, self.failed_path
                    )
                    _write(self.failed_path, line + "\n", mode="a")
            left = kept + rest
            _replace(self.path, "".join(f"{line}\n" for line in left if line.strip()))
        if done:
            log.warning("replayed %d spooled record(s) into the database", done)
        return done


def _age(entry: dict[str, Any]) -> timedelta:
    try:
        at = datetime.fromisoformat(str(entry["at"]))
    except (KeyError, ValueError):
        return DEFER_LIMIT  # no usable time: do not keep it forever
    return datetime.now(UTC) - (at if at.tzinfo else at.replace(tzinfo=UTC))


def _write(path: Path, text: str, *, mode: str) -> None:
    new = not path.exists()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    with open(os.open(path, flags, 0o600), mode, encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if new:
        _sync_dir(path.parent)


def _replace(path: Path, text: str) -> None:
    """Swap in the entries still waiting (atomically; none left removes the file)."""
    if not text:
        path.unlink(missing_ok=True)
        _sync_dir(path.parent)
        return
    tmp = path.with_suffix(".tmp")
    _write(tmp, text, mode="w")
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
