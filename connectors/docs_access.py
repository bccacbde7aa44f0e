"""Which documents of a docs folder narrow their source's readers, read with the index's rules.

For ``access who-can``: an admin sees each document whose front matter narrows who may read
it, and each document that is closed to everyone (front matter in doubt, a link, too large),
with why. The folder is read the way the index reads it (no links, size cap, fail-closed
front matter), so what this lists is what the index holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connectors.docs import parse_bytes
from connectors.docs_files import DocumentError, read_document, scan_folder


@dataclass(frozen=True)
class DocumentAccess:
    path: str  # relative to the source folder
    title: str
    readers: tuple[str, ...]  # the reader tokens it narrows to; () when closed
    closed: str | None = None  # why nobody may read it (it is not indexed)


def narrowed_documents(folder: Path) -> list[DocumentAccess]:
    """Documents that narrow their source's readers or are closed, in path order (an
    OSError when the folder itself cannot be read)."""
    scan = scan_folder(folder)
    found = [DocumentAccess(rel, "", (), why) for rel, why in scan.skipped.items()]
    for rel in scan.files:
        try:
            raw, mtime = read_document(folder, rel)
            doc = parse_bytes(raw, rel, mtime=mtime)
        except DocumentError as exc:
            found.append(DocumentAccess(rel, "", (), str(exc)))
            continue
        if doc.readers != ("*",):
            found.append(DocumentAccess(rel, doc.title, doc.readers))
    return sorted(found, key=lambda d: d.path)
