"""The dense side of a docs index: one unit vector per passage, stored beside the Tantivy
index as ``dense-<model>.npy`` (the vectors) and ``dense-<model>.json`` (for each row, the
passage key and its readers).

Vectors are updated with the documents (rows of a changed or removed file are dropped, a
changed file's passages are appended) and versioned by embedding model: a store written by
another model is deleted, never mixed, and the caller re-indexes everything.

Search filters by readers BEFORE ranking, exactly as the Tantivy query does: only rows whose
readers include one of the asker's principals (or ``*``, the source's own readers) are scored,
so a passage the asker may not read can neither be returned nor push a readable one out of
the top ``k``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.core.embeddings import Embedder

# np.load parses the file's header with ast.literal_eval; on CPython 3.11.7 two threads
# parsing at once failed with "SystemError: AST constructor recursion depth mismatch" (seen
# in CI). Sources are refreshed in parallel threads, so loads take turns.
_LOADING = threading.Lock()

log = logging.getLogger("concierge.connectors.docs")

DENSE_VERSION = 1


def passage_key(path: str, ordinal: int) -> str:
    return f"{path}#{ordinal}"


class DenseStore:
    """Passage vectors of one docs index for one embedding model."""

    def __init__(self, folder: Path, embedder: Embedder) -> None:
        self.embedder = embedder
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder.model_id)
        self.folder = folder
        self.vectors_path = folder / f"dense-{name}.npy"
        self.meta_path = folder / f"dense-{name}.json"
        self.snap = Snapshot.build(np.zeros((0, embedder.dim), dtype=np.float32), [], [], [])
        self.loaded = False

    def load(self) -> bool:
        """Read the stored vectors; False when there are none for this model (rebuild).
        Stores written by another model are removed."""
        for other in self.folder.glob("dense-*"):
            if other not in (self.vectors_path, self.meta_path):
                other.unlink(missing_ok=True)
        try:
            meta = json.loads(self.meta_path.read_text())
            with _LOADING:
                matrix = np.load(self.vectors_path)
        except (OSError, ValueError):
            return False
        if (
            not isinstance(meta, dict)
            or meta.get("version") != DENSE_VERSION
            or meta.get("model") != self.embedder.model_id
            or len(meta.get("rows", [])) != matrix.shape[0]
        ):
            return False
        rows = meta["rows"]
        self._set(
            matrix.astype(np.float32),
            [r[0] for r in rows],
            [r[1] for r in rows],
            [tuple(r[2]) for r in rows],
        )
        self.loaded = True
        return True

    def _set(
        self,
        matrix: npt.NDArray[np.float32],
        keys: list[str],
        paths: list[str],
        readers: list[tuple[str, ...]],
    ) -> None:
        # One assignment: a search running meanwhile sees the old rows or the new, never a mix.
        self.snap = Snapshot.build(matrix, keys, paths, readers)

    @property
    def keys(self) -> list[str]:
        return self.snap.keys

    def update(
        self,
        drop_paths: set[str],
        added: list[tuple[str, str, tuple[str, ...], str]],
    ) -> None:
        """Drop the rows of ``drop_paths``; add ``(key, path, readers, text)`` rows."""
        old = self.snap
        keep = [i for i, p in enumerate(old.paths) if p not in drop_paths]
        vectors = self.embedder.embed_documents([a[3] for a in added]) if added else None
        parts = [old.matrix[keep]] if keep else []
        if vectors is not None and len(vectors):
            parts.append(vectors)
        readers = [old.groups[old.group_of[i]] for i in keep] + [a[2] for a in added]
        matrix = np.vstack(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)
        self._set(
            matrix,
            [old.keys[i] for i in keep] + [a[0] for a in added],
            [old.paths[i] for i in keep] + [a[1] for a in added],
            readers,
        )
        self.loaded = True

    def save(self) -> None:
        """Write vectors then metadata, each through a temporary file and a rename."""
        snap = self.snap
        tmp = self.vectors_path.with_suffix(".tmp.npy")
        np.save(tmp, snap.matrix)
        tmp.replace(self.vectors_path)
        rows = [
            [k, p, list(snap.groups[g])]
            for k, p, g in zip(snap.keys, snap.paths, snap.group_of.tolist(), strict=True)
        ]
        meta = {"version": DENSE_VERSION, "model": self.embedder.model_id, "rows": rows}
        tmp_meta = self.meta_path.with_suffix(".tmp")
        tmp_meta.write_text(json.dumps(meta))
        tmp_meta.replace(self.meta_path)

    def allowed_rows(
        self, principals: frozenset[str], snap: Snapshot | None = None
    ) -> npt.NDArray[np.intp]:
        """Rows the holder of ``principals`` may read (``*``: the source's own readers)."""
        snap = snap or self.snap
        wanted = principals | {"*"}
        ok = np.fromiter(
            (bool(wanted.intersection(g)) for g in snap.groups), dtype=bool, count=len(snap.groups)
        )
        if not len(ok):
            return np.zeros(0, dtype=np.intp)
        return np.flatnonzero(ok[snap.group_of])

    def search(
        self, query: npt.NDArray[np.float32], principals: frozenset[str], n: int
    ) -> list[tuple[str, float]]:
        """The ``n`` readable passages nearest the query: ``(key, cosine)``, best first."""
        snap = self.snap
        if not snap.keys or n <= 0:
            return []
        rows = self.allowed_rows(principals, snap)
        if not len(rows):
            return []
        # One product over every row is cheaper than copying the readable rows out; ranking
        # then happens among readable rows only.
        scores = (snap.matrix @ query)[rows]
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [(snap.keys[int(rows[j])], float(scores[j])) for j in top]

    def cosine(self, query: npt.NDArray[np.float32], key: str) -> float | None:
        snap = self.snap
        row = snap.row_of.get(key)
        return None if row is None else float(snap.matrix[row] @ query)


@dataclass(frozen=True)
class Snapshot:
    """The rows of a store at one moment (replaced whole, never changed)."""

    matrix: npt.NDArray[np.float32]
    keys: list[str]
    paths: list[str]
    groups: list[tuple[str, ...]]  # distinct reader sets
    group_of: npt.NDArray[np.int32]  # each row's reader set
    row_of: dict[str, int]

    @classmethod
    def build(
        cls,
        matrix: npt.NDArray[np.float32],
        keys: list[str],
        paths: list[str],
        readers: list[tuple[str, ...]],
    ) -> Snapshot:
        groups: dict[tuple[str, ...], int] = {}
        group_of = np.fromiter(
            (groups.setdefault(r, len(groups)) for r in readers), dtype=np.int32, count=len(keys)
        )
        return cls(
            np.ascontiguousarray(matrix, dtype=np.float32),
            keys,
            paths,
            list(groups),
            group_of,
            {k: i for i, k in enumerate(keys)},
        )
