"""Embedding providers for the dense half of hybrid retrieval.

``local`` (the default) is a static embedding model: a table of one 256-number vector per
token, averaged over a text's tokens. Its weights and tokenizer ship inside the ``wordllama``
registry package, so it runs on CPU with no network and no download at run time (the
package's own loader looks for the tokenizer in the wrong folder and then tries to download
it; this module reads the packaged files directly and never imports that loader, which also
reconfigures logging on import). ``openai`` is any OpenAI-compatible ``/v1/embeddings``
endpoint, priced per million input tokens like a model.

Vectors are unit length (float32), so a dot product is the cosine similarity. ``model_id``
names the model and its dimensions: an index built with one model is never searched with
another.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.config import Embeddings
from bot.errors import ConfigError

Vector = npt.NDArray[np.float32]

LOCAL_WEIGHTS = "weights/l2_supercat_256.safetensors"
LOCAL_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
QUERY_CACHE = 512


class EmbeddingError(Exception):
    """The embedding provider failed; the message is safe to show and log."""


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (rows / norms).astype(np.float32)


class Embedder(ABC):
    """Turns texts into unit vectors. Queries are cached (the retriever embeds a question
    once, with its cost; every source then reuses that vector)."""

    model_id: str
    dim: int
    accepted_classes: frozenset[str]
    price_per_mtok: float = 0.0

    def __init__(self) -> None:
        self._queries: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()

    @abstractmethod
    def embed_documents(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One unit row per text (blocking: call from a worker thread)."""

    async def aembed_documents(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], int]:
        """Rows for ``texts`` and the input tokens billed (0 when local)."""
        return await asyncio.to_thread(self.embed_documents, texts), 0

    def cached_query(self, text: str) -> Vector | None:
        with self._lock:
            vec = self._queries.get(text)
            if vec is not None:
                self._queries.move_to_end(text)
            return vec

    def _remember(self, text: str, vec: Vector) -> None:
        with self._lock:
            self._queries[text] = vec
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)

    def query_vector(self, text: str) -> Vector:
        """The query's vector, from the cache when the retriever has embedded it already."""
        vec = self.cached_query(text)
        if vec is None:
            vec = self.embed_documents([text])[0]
            self._remember(text, vec)
        return vec

    async def embed_query(self, text: str) -> tuple[Vector, float]:
        """The query's vector and what embedding it cost in USD (0 when cached or local)."""
        vec = self.cached_query(text)
        if vec is not None:
            return vec, 0.0
        rows, tokens = await self.aembed_documents([text])
        self._remember(text, rows[0])
        return rows[0], tokens * self.price_per_mtok / 1_000_000


@lru_cache(maxsize=1)
def _local_tables() -> tuple[Any, npt.NDArray[np.float32]]:
    """The packaged tokenizer and token table, loaded once per process (about 0.5 s)."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "embeddings: provider local needs the wordllama package (pip install wordllama), "
            "or set embeddings: {provider: off}"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    weights, tokenizer_file = root / LOCAL_WEIGHTS, root / LOCAL_TOKENIZER
    if not weights.is_file() or not tokenizer_file.is_file():
        raise ConfigError(f"embeddings: the local model files are missing from {root}")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    with safe_open(str(weights), framework="np") as f:
        table = np.ascontiguousarray(f.get_tensor("embedding.weight"), dtype=np.float32)
    return tokenizer, table


class LocalEmbedder(Embedder):
    """WordLlama's static model (256 dimensions, used truncated), read from the installed
    package."""

    # WordLlama's vectors are Matryoshka-trained: the first 128 (or 64) of the 256 numbers keep
    # most of the meaning at a half (a quarter) of the memory and of the scan time per question
    # (BENCHMARKS.md). ``embeddings.dimensions`` chooses; 128 by default.
    dims = (64, 128, 256)
    max_tokens = 512  # a passage's first tokens carry its topic; bounds the work per passage
    max_chars = 4 * max_tokens
    batch = 256

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        if dim not in self.dims:
            raise ConfigError(
                f"embeddings: the local model has 64, 128 or 256 dimensions, not {dim}"
            )
        self.dim = dim
        self.model_id = f"local:wordllama-l2-supercat-{dim}-lc"
        self.accepted_classes = frozenset(("public", "internal", "confidential"))
        tokenizer, table = _local_tables()
        self.tokenizer, self.table = tokenizer, np.ascontiguousarray(table[:, : self.dim])

    def embed_documents(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Lower-cased: people type "pto" as often as "PTO". In batches, so that indexing a
        # large folder never holds every tokenised passage at once.
        for start in range(0, len(texts), self.batch):
            lowered = [
                # Lone surrogates (from a malformed message) cannot be tokenised: replaced.
                t.lower()[: self.max_chars].encode("utf-8", "replace").decode("utf-8")
                for t in texts[start : start + self.batch]
            ]
            encoded = self.tokenizer.encode_batch(lowered, add_special_tokens=False)
            for i, enc in enumerate(encoded, start):
                ids = np.asarray(enc.ids[: self.max_tokens], dtype=np.int64)
                if ids.size:
                    np.clip(ids, 0, self.table.shape[0] - 1, out=ids)
                    out[i] = self.table[ids].mean(axis=0)
        return _unit(out)


class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Azure, Ollama, vLLM, TEI)."""

    def __init__(self, spec: Embeddings, *, api_key: str | None, base_url: str | None) -> None:
        super().__init__()
        url = spec.base_url or base_url or "https://api.openai.com/v1"
        self.url = url.rstrip("/") + "/embeddings"
        self.model = spec.model or ""
        self.api_key = api_key
        self.dimensions = spec.dimensions
        self.timeout_s = spec.timeout_s
        self.batch_size = spec.batch_size
        self.price_per_mtok = spec.price.input
        self.accepted_classes = spec.accepted_classes
        self.model_id = f"openai:{self.model}:{spec.dimensions or 'native'}"
        self.dim = spec.dimensions or 0  # learned from the first answer when not configured

    def embed_documents(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Blocking form for the indexer's worker thread (which has no event loop)."""
        return asyncio.run(self.aembed_documents(texts))[0]

    async def aembed_documents(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], int]:
        import aiohttp

        rows: list[list[float]] = []
        tokens = 0
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            for i in range(0, len(texts), self.batch_size):
                batch = [t or " " for t in texts[i : i + self.batch_size]]
                body: dict[str, Any] = {"model": self.model, "input": batch}
                if self.dimensions:
                    body["dimensions"] = self.dimensions
                got, used = await self._post(http, body, len(batch))
                rows += got
                tokens += used
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32), tokens
        matrix = np.asarray(rows, dtype=np.float32)
        self.dim = self.dim or matrix.shape[1]
        if matrix.shape[1] != self.dim:
            raise EmbeddingError(f"the embeddings endpoint returned {matrix.shape[1]} numbers")
        return _unit(matrix), tokens

    async def _post(self, http: Any, body: dict[str, Any], n: int) -> tuple[list[list[float]], int]:
        import aiohttp

        try:
            async with http.post(self.url, json=body) as resp:
                if resp.status != 200:
                    raise EmbeddingError(f"the embeddings endpoint answered HTTP {resp.status}")
                data = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EmbeddingError(
                f"the embeddings endpoint failed ({exc.__class__.__name__})"
            ) from None
        try:
            items = sorted(data["data"], key=lambda d: int(d.get("index", 0)))
            rows = [[float(x) for x in d["embedding"]] for d in items]
            used = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError):
            raise EmbeddingError("the embeddings endpoint answered in an unknown shape") from None
        if len(rows) != n:
            raise EmbeddingError("the embeddings endpoint answered for the wrong number of texts")
        return rows, used


def make_embedder(
    spec: Embeddings, *, api_key: str | None = None, base_url: str | None = None
) -> Embedder | None:
    """The configured provider, or None when dense retrieval is off."""
    if spec.provider == "off":
        return None
    if spec.provider == "openai":
        return OpenAIEmbedder(spec, api_key=api_key, base_url=base_url)
    return local_embedder(spec.dimensions or 128)


@lru_cache(maxsize=3)
def local_embedder(dim: int = 128) -> LocalEmbedder:
    """One local model per process and size (loading it takes about half a second)."""
    return LocalEmbedder(dim)
