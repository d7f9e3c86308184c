"""Dense candidates: nearest ontology names by an encoder's embeddings.

Names are lower-cased and deduplicated exactly as for TF-IDF (a name shared by several
concepts scores for each; a concept scores its best name). Name embeddings are
L2-normalised, so the inner product is the cosine; the search is exact — query chunks
times the whole name matrix with ``torch.topk`` — or FAISS's exact ``IndexFlatIP`` when
FAISS is installed. Embeddings are cached on disk keyed by (encoder hash, ontology
hash, pooling, max_length), like the TF-IDF index cache.

Merge rule (:func:`merge_candidates`): of k slots, the first ``k − n_dense`` go to the
TF-IDF candidates in their order, then the dense candidates in their order fill up to
k, skipping concepts already present (and TF-IDF's next ones fill any slot left when
the dense list runs out). With ``n_dense = k // 2`` by default, both retrievers keep
their top half of the budget.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from elcl.candidates.tfidf import Candidate, TfidfCandidateGenerator, name_rows, query_plan
from elcl.data.ontology import Ontology
from elcl.errors import ElclError
from elcl.fileio import atomic_path

CACHE_VERSION = 1
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json", "vocab.txt")


def encoder_hash(name: str) -> str:
    """sha256 over the encoder folder's weight, config and vocabulary files (or the hub id)."""
    from elcl.fileio import sha256_file
    from elcl.models.encoders import resolve_model_path

    path = Path(resolve_model_path(name))
    h = hashlib.sha256()
    files = [path / f for f in _WEIGHT_FILES if (path / f).is_file()] if path.is_dir() else []
    if not files:
        h.update(f"hub:{name}".encode())
    for f in files:
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()[:32]


class DenseCandidateGenerator:
    """Top-k concepts per text by cosine of pooled encoder embeddings (exact search)."""

    def __init__(
        self,
        ontology: Ontology,
        encoder: str,
        *,
        pooling: str = "mean",
        max_length: int = 25,
        cache_dir: Path | str | None = None,
        batch_size: int = 64,
        query_chunk: int = 512,
        amp: str = "none",
        device: str = "cpu",
        use_faiss: bool = True,
    ) -> None:
        if len(ontology) == 0:
            raise ElclError(f"ontology ({ontology.source}) has no concepts")
        self.ontology = ontology
        self.encoder = encoder
        self.pooling = pooling
        self.max_length = max_length
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self.query_chunk = query_chunk
        self.amp = amp
        self.device = torch.device(device)
        self.use_faiss = use_faiss
        self.cache_hit = False
        self._model = None
        self._fitted = False

    def cache_key(self) -> str:
        payload = json.dumps(
            [
                CACHE_VERSION,
                encoder_hash(self.encoder),
                self.ontology.content_hash(),
                self.pooling,
                self.max_length,
                self.amp,
            ]
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def _load_model(self):
        if self._model is None:
            from elcl.models.encoders import load_encoder_model, load_tokenizer

            model = load_encoder_model(self.encoder, "candidates.dense_encoder (default model.name)")
            self._model = model.to(self.device).eval()
            self._tokenizer = load_tokenizer(self.encoder)
        return self._model

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised float32 embeddings ``[len(texts), d]`` in input order."""
        from elcl.models.embedding import embed_texts

        model = self._load_model()
        with torch.inference_mode():
            return embed_texts(
                model,
                self._tokenizer,
                [t.lower().strip() for t in texts],
                max_length=self.max_length,
                pooling=self.pooling,
                chunk_size=self.batch_size,
                amp=self.amp,
                normalize=True,
                device=self.device,
            ).cpu()

    def fit(self) -> DenseCandidateGenerator:
        """Embed every name (or load the embeddings from the cache)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, save_file

        rows, display, concepts, concept_ids = name_rows(self.ontology)
        path = self.cache_dir / f"dense-{self.cache_key()}.safetensors" if self.cache_dir is not None else None
        emb = None
        if path is not None and path.is_file():
            try:
                emb = load_file(str(path))["embeddings"]
                self.cache_hit = emb.shape[0] == len(rows)
                emb = emb if self.cache_hit else None
            except (SafetensorError, OSError, KeyError, RuntimeError):  # a corrupt entry is rebuilt
                emb = None
        if emb is None:
            emb = self.encode(rows).contiguous()
            if path is not None:
                with atomic_path(path, ".safetensors") as tmp:
                    save_file({"embeddings": emb}, str(tmp))
        self._emb = emb
        self._display = display
        self._concept_ids = concept_ids
        self._row_ptr = np.zeros(len(concepts) + 1, dtype=np.int64)
        self._row_ptr[1:] = np.cumsum([len(c) for c in concepts])
        self._row_concepts = np.fromiter(
            (c for cs in concepts for c in cs), dtype=np.int64, count=int(self._row_ptr[-1])
        )
        self._faiss = None
        if self.use_faiss:
            try:
                import faiss

                index = faiss.IndexFlatIP(emb.shape[1])
                index.add(emb.numpy().astype(np.float32))
                self._faiss = index
            except ImportError:
                self._faiss = None
        self._fitted = True
        return self

    @property
    def num_names(self) -> int:
        return len(self._display) if self._fitted else 0

    def search(self, queries: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-``width`` name rows per query embedding: (scores, rows), best first."""
        width = min(width, self._emb.shape[0])
        if self._faiss is not None:
            scores, idx = self._faiss.search(queries.numpy().astype(np.float32), width)
            return torch.from_numpy(scores), torch.from_numpy(idx).long()
        out_s, out_i = [], []
        for lo in range(0, queries.shape[0], self.query_chunk):
            sims = queries[lo : lo + self.query_chunk] @ self._emb.T
            s, i = torch.topk(sims, width, dim=1)
            out_s.append(s)
            out_i.append(i)
        return torch.cat(out_s), torch.cat(out_i)

    def top_k(self, texts: list[str], k: int) -> list[list[Candidate]]:
        """The k best concepts per text, best first (every concept has a name, so always k)."""
        if not self._fitted:
            self.fit()
        n = self._emb.shape[0]
        k, keys, unique, width = query_plan(texts, k, len(self._concept_ids), n)
        if not unique:
            return []
        q = self.encode(unique)
        scores, rows = self.search(q, width)
        ranked: dict[str, list[Candidate]] = {}
        for i, text in enumerate(unique):
            got = self._concepts_of(scores[i], rows[i], k)
            w = width
            while len(got) < k and w < n:  # many names of few concepts at the top: look further
                w = min(n, w * 4)
                s, r = self.search(q[i : i + 1], w)
                got = self._concepts_of(s[0], r[0], k)
            ranked[text] = got
        return [list(ranked[key]) for key in keys]

    def _concepts_of(self, scores: torch.Tensor, rows: torch.Tensor, k: int) -> list[Candidate]:
        chosen: list[Candidate] = []
        seen: set[int] = set()
        for s, r in zip(scores.tolist(), rows.tolist()):
            for c in self._row_concepts[self._row_ptr[r] : self._row_ptr[r + 1]]:
                if int(c) not in seen:
                    seen.add(int(c))
                    chosen.append(Candidate(self._concept_ids[c], self._display[r], float(s)))
                    if len(chosen) == k:
                        return chosen
        return chosen


def merge_candidates(
    sparse: Sequence[Candidate], dense: Sequence[Candidate], k: int, n_dense: int | None = None
) -> list[Candidate]:
    """TF-IDF's first ``k − n_dense``, then dense ones not yet present, then TF-IDF's rest (module doc)."""
    n_dense = k // 2 if n_dense is None else max(0, min(n_dense, k))
    out = list(sparse[: k - n_dense])
    seen = {c.concept_id for c in out}
    for pool in (dense, sparse[k - n_dense :]):
        for c in pool:
            if len(out) == k:
                return out
            if c.concept_id not in seen:
                seen.add(c.concept_id)
                out.append(c)
    return out


def union_candidates(sparse: Sequence[Candidate], dense: Sequence[Candidate]) -> list[Candidate]:
    """Every concept of both lists (TF-IDF's first): the recall ceiling of the two together."""
    out = list(sparse)
    seen = {c.concept_id for c in out}
    out.extend(c for c in dense if c.concept_id not in seen and not seen.add(c.concept_id))  # type: ignore[func-returns-value]
    return out


class MergedCandidateGenerator:
    """TF-IDF and dense candidates merged by :func:`merge_candidates`; scores stay TF-IDF's.

    Candidates that only the dense retriever found get their TF-IDF pair score, so the
    linker's ``model.sparse_weight`` reads one scale for every candidate.
    """

    def __init__(
        self, sparse: TfidfCandidateGenerator, dense: DenseCandidateGenerator, n_dense: int | None = None
    ) -> None:
        self.sparse = sparse
        self.dense = dense
        self.n_dense = n_dense
        self.ontology = sparse.ontology

    def fit(self) -> MergedCandidateGenerator:
        self.sparse.fit()
        self.dense.fit()
        return self

    @property
    def num_names(self) -> int:
        return self.sparse.num_names

    @property
    def cache_hit(self) -> bool:
        return self.sparse.cache_hit and self.dense.cache_hit

    def pair_scores(self, texts: list[str], names: list[str]) -> np.ndarray:
        return self.sparse.pair_scores(texts, names)

    def top_k(self, texts: list[str], k: int) -> list[list[Candidate]]:
        sparse = self.sparse.top_k(texts, k)
        dense = self.dense.top_k(texts, k)
        merged = [merge_candidates(s, d, k, self.n_dense) for s, d in zip(sparse, dense)]
        # Re-score the dense-only candidates with TF-IDF, one vectorised call for all of them.
        todo = [(i, j) for i, (s, m) in enumerate(zip(sparse, merged)) for j in range(len(m)) if m[j] not in s]
        if todo:
            scores = self.sparse.pair_scores([texts[i] for i, _ in todo], [merged[i][j].name for i, j in todo])
            for (i, j), sc in zip(todo, scores):
                c = merged[i][j]
                merged[i][j] = Candidate(c.concept_id, c.name, float(sc))
        return merged
