"""Reading a docs source's files without ever leaving its folder (invariant 9).

A document author controls what is in the folder, not where the folder is. A symbolic link
(to /etc/passwd, to another source's confidential folder, to a .env file) would otherwise put
text from elsewhere under this source's readers. So:

- the folder is walked without following links; every link, to a file or a folder, inside
  or outside, is skipped with a warning naming it (following even the links that stay inside
  would let ``notes.md -> .env`` expose a hidden file, and walking links invites loops);
- hidden names (``.git``, ``.env``, ``.drafts/``) are ignored;
- files over MAX_FILE_BYTES are skipped with a warning before they are read;
- a file is opened one path component at a time, each relative to its parent's descriptor
  with O_NOFOLLOW, so a file or folder swapped for a link between the scan and the read is
  refused by the kernel, not by an earlier check that could be raced; on Linux the opened
  descriptor's real path is checked against the folder's as well.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SUFFIXES = frozenset({".md", ".markdown", ".txt"})
MAX_FILE_BYTES = 2_000_000

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO named like a document must not hang the indexer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LINK_WARNING = (
    "is a symbolic link; documents are read only from regular files inside the source "
    "folder (copy the file in instead of linking to it)"
)


class DocumentError(ValueError):
    """A file that cannot be indexed safely; it is skipped until fixed. The message names
    the problem for the person who owns the folder (never the file's text)."""


@dataclass
class FolderScan:
    """What a walk of the folder found: files to index and files skipped, with why."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # rel -> (mtime_ns, size)
    skipped: dict[str, str] = field(default_factory=dict)  # rel -> reason


def document_parts(rel: str) -> tuple[str, ...]:
    """The components of ``rel`` if it may name a document of the folder, else DocumentError:
    no absolute paths, no ``..``, no hidden names, a document suffix."""
    parts = PurePosixPath(rel).parts
    if (
        not parts
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(p in {"", ".", ".."} or p.startswith(".") for p in parts)
    ):
        raise DocumentError("is not a document inside the source folder")
    if PurePosixPath(parts[-1]).suffix.lower() not in SUFFIXES:
        raise DocumentError("is not a Markdown or text document")
    return parts


def scan_folder(folder: Path) -> FolderScan:
    """Walk ``folder`` (an OSError if it cannot be opened) without following any link."""
    scan = FolderScan()
    root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pending: list[tuple[str, ...]] = [()]
        while pending:
            parts = pending.pop()
            try:
                fd = _open_dirs(root, parts)
            except OSError as exc:
                scan.skipped["/".join(parts)] = _why(exc)
                continue
            try:
                pending.extend(_scan_one(fd, parts, scan))
            finally:
                os.close(fd)
    finally:
        os.close(root)
    return scan


def _scan_one(fd: int, parts: tuple[str, ...], scan: FolderScan) -> list[tuple[str, ...]]:
    """Record the documents of one directory; return its sub-directories to walk."""
    subdirs: list[tuple[str, ...]] = []
    with os.scandir(fd) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            rel = "/".join((*parts, entry.name))
            if entry.is_symlink():
                scan.skipped[rel] = _LINK_WARNING
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append((*parts, entry.name))
            elif PurePosixPath(entry.name).suffix.lower() not in SUFFIXES:
                continue
            elif not entry.is_file(follow_symlinks=False):
                scan.skipped[rel] = "is not a regular file"
            else:
                st = entry.stat(follow_symlinks=False)
                if st.st_size > MAX_FILE_BYTES:
                    scan.skipped[rel] = _too_large(st.st_size)
                else:
                    scan.files[rel] = (st.st_mtime_ns, st.st_size)
    return sorted(subdirs, reverse=True)


def read_document(folder: Path, rel: str) -> tuple[bytes, float]:
    """The bytes and modification time of document ``rel`` of ``folder``, read without
    following any link on the way (DocumentError otherwise, with a message for the owner)."""
    parts = document_parts(rel)
    try:
        root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DocumentError(f"cannot be read: the source folder {_why(exc)}") from None
    try:
        parent = _open_dirs(root, parts[:-1])
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            return _read_open_file(fd, root)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DocumentError(_why(exc)) from None
    finally:
        os.close(root)


def _open_dirs(root: int, parts: tuple[str, ...]) -> int:
    """A new descriptor for ``root/parts…``, refusing a link at every step."""
    fd = os.dup(root)
    for part in parts:
        try:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            # Linux reports a link opened with O_DIRECTORY | O_NOFOLLOW as ENOTDIR: say which.
            if exc.errno == errno.ENOTDIR and _is_link(part, fd):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
            raise
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _read_open_file(fd: int, root: int) -> tuple[bytes, float]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise DocumentError("is not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise DocumentError(_too_large(st.st_size))
    _check_inside(fd, root)
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_FILE_BYTES:  # the file may grow between fstat and read
        chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_FILE_BYTES:
        raise DocumentError(_too_large(size))
    return b"".join(chunks), st.st_mtime


def _check_inside(fd: int, root: int) -> None:
    """Belt and braces on Linux: the opened file's real path lies under the folder's."""
    try:
        file_path = os.readlink(f"/proc/self/fd/{fd}")
        root_path = os.readlink(f"/proc/self/fd/{root}")
    except OSError:
        return  # no /proc (macOS): the O_NOFOLLOW walk alone guarantees it
    if not file_path.startswith(root_path.rstrip("/") + "/"):
        raise DocumentError("lies outside the source folder")


def _too_large(size: int) -> str:
    return f"is larger than {MAX_FILE_BYTES // 1_000_000} MB ({size:,} bytes)"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return (
            "is a symbolic link (or a folder on its path is); documents are read only "
            "inside the source folder"
        )
    if exc.errno == errno.ENOTDIR:
        return "has a path through something that is not a folder"
    if exc.errno == errno.ENOENT:
        return "no longer exists"
    return f"cannot be read ({exc.strerror})"
