"""Gallery search at 1k-1M items: Annoy settings vs exact numpy, each with recall@10 vs exact.

Synthetic unit vectors in 1,000 Gaussian clusters at the bundle's embedding size: clustered like
real embeddings (uniform random data is the known worst case for Annoy, see ../shared/NOTES.md).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from annoy import AnnoyIndex

SIZES = [1_000, 10_000, 100_000, 1_000_000]
QUERIES = 200
# (trees, search_k); the 1 M index is built with fewer trees to keep `make bench` short.
SETTINGS = {1_000: [(50, -1), (50, 4000)], 10_000: [(50, -1), (50, 4000), (50, 20000)],
            100_000: [(50, -1), (50, 4000), (50, 20000)], 1_000_000: [(16, 4000), (16, 20000)]}


def _data(size: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 1000, size)] + 0.5 * rng.normal(size=(size, dim)).astype(np.float32)
    queries = centres[rng.integers(0, 1000, QUERIES)] + 0.5 * rng.normal(size=(QUERIES, dim)).astype(np.float32)
    normalise = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return normalise(vectors).astype(np.float32), normalise(queries).astype(np.float32)


# Built once per session and shared by the parametrized cases.
_DATA: dict = {}
_INDEX: dict = {}
_TRUTH: dict = {}


def _exact_top(vectors: np.ndarray, query: np.ndarray, k: int = 10) -> np.ndarray:
    scores = vectors @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def _get(size: int, dim: int):
    if size not in _DATA:
        _DATA[size] = _data(size, dim)
        vectors, queries = _DATA[size]
        _TRUTH[size] = [set(_exact_top(vectors, q).tolist()) for q in queries]
    return _DATA[size]


def _index(size: int, dim: int, trees: int, folder) -> tuple[AnnoyIndex, float]:
    key = (size, trees)
    if key not in _INDEX:
        vectors, _ = _get(size, dim)
        index = AnnoyIndex(dim, "angular")
        for i, v in enumerate(vectors):
            index.add_item(i, v)
        started = time.perf_counter()
        index.build(trees, n_jobs=-1)
        build_seconds = time.perf_counter() - started
        path = folder / f"index_{size}_{trees}.ann"
        index.save(str(path))  # searched from disk (mmap), as on the device
        _INDEX[key] = (index, build_seconds)
    return _INDEX[key]


def _cases():
    for size in SIZES:
        yield pytest.param(size, "exact", 0, 0, id=f"{size}-exact")
        for trees, search_k in SETTINGS[size]:
            yield pytest.param(size, "annoy", trees, search_k, id=f"{size}-annoy-t{trees}-sk{search_k}")


@pytest.mark.parametrize("size, method, trees, search_k", list(_cases()))
def test_search(benchmark, manifest, tmp_path_factory, size, method, trees, search_k):
    dim = manifest.output.embedding_size
    vectors, queries = _get(size, dim)
    benchmark.group = f"search-{size}"
    state = {"i": 0}
    if method == "exact":
        def run():
            state["i"] = (state["i"] + 1) % QUERIES
            return _exact_top(vectors, queries[state["i"]])
        recall, build_seconds = 1.0, 0.0
    else:
        index, build_seconds = _index(size, dim, trees, tmp_path_factory.getbasetemp())

        def run():
            state["i"] = (state["i"] + 1) % QUERIES
            return index.get_nns_by_vector(queries[state["i"]], 10, search_k=search_k)

        found = [set(index.get_nns_by_vector(q, 10, search_k=search_k)) for q in queries]
        recall = float(np.mean([len(f & t) / 10 for f, t in zip(found, _TRUTH[size])]))
    benchmark.extra_info.update(size=size, method=method, trees=trees, search_k=search_k, dim=dim,
                                recall_at_10=recall, build_seconds=round(build_seconds, 2))
    benchmark.pedantic(run, rounds=100 if size < 1_000_000 else 30, iterations=1, warmup_rounds=3)
