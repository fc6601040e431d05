"""``VectorIndex``: exact nearest-neighbour search over buckets' chunk vectors.

Where PostgreSQL keeps the vectors in pgvector (``persistence.vectors``) the database searches,
one query, and nothing is held here. Elsewhere each bucket's vectors are held in memory as one
float32 matrix, reloaded when the bucket's ``version`` in the database moved (so replicas stay
current with one small query per search); a search is one matrix-vector product and a partial
sort: exact results, and about as fast as ``sqlite-vec``'s own brute-force scan (which this
Python's sqlite3 could not load anyway: extension loading is compiled out). Distances are cosine
distances (``1 - cosine``).
"""

from __future__ import annotations

import asyncio

import numpy as np

from switchboard.persistence.buckets import BucketRepository
from switchboard.persistence.vectors import WIDTH


class VectorIndex:
    def __init__(self, repo: BucketRepository) -> None:
        self._repo = repo
        self._cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self._lock = asyncio.Lock()

    async def _matrix(self, bucket_id: str, version: int) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache.get(bucket_id)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        async with self._lock:
            cached = self._cache.get(bucket_id)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            rows = await self._repo.vectors(bucket_id)
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = (np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
                      .reshape(len(rows), WIDTH) if rows else np.empty((0, WIDTH), np.float32))
            self._cache[bucket_id] = (version, ids, matrix)
            return ids, matrix

    async def search(self, bucket_ids: list[str], query: np.ndarray,
                     k: int) -> list[tuple[int, float]]:
        """The ``k`` closest chunks over these buckets: (chunk id, cosine distance), closest
        first."""
        if self._repo.pgvector:  # known once the database is open
            return await self._repo.nearest(bucket_ids, query, k) if bucket_ids and k > 0 else []
        versions = await self._repo.versions(bucket_ids)
        found_ids, found_scores = [], []
        for bucket_id in bucket_ids:
            if bucket_id not in versions:
                continue
            ids, matrix = await self._matrix(bucket_id, versions[bucket_id])
            if not len(ids):
                continue
            scores = matrix @ query.astype(np.float32)
            top = min(k, len(ids))
            best = np.argpartition(-scores, top - 1)[:top]
            found_ids.append(ids[best])
            found_scores.append(scores[best])
        if not found_ids:
            return []
        ids = np.concatenate(found_ids)
        scores = np.concatenate(found_scores)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[i]), float(1.0 - scores[i])) for i in order]

    def forget(self, bucket_id: str) -> None:
        self._cache.pop(bucket_id, None)
