"""Negatives for a query: catalog products it was not engaged with, drawn at random, or first
the query's own shown-but-not-engaged products (hard negatives) when the caller passes them."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

DEFAULT_RATIO = 20  # negatives per engaged product (the 1:20)


class NegativeSampler:
    """Draws products at random from the catalog, never one engaged with the query.

    Args:
        num_products: catalog size (products are indices 0..num_products-1).
        ratio: negatives drawn per positive.
        seed: seeds the draws.
    """

    def __init__(self, num_products: int, ratio: int = DEFAULT_RATIO, seed: int = 0):
        if ratio < 1:
            raise ValueError(f"ratio must be at least 1, got {ratio}")
        if num_products < 2:
            raise ValueError(f"the catalog needs at least 2 products, got {num_products}")
        self.num_products = num_products
        self.ratio = ratio
        self._rng = np.random.default_rng(seed)

    def sample(
        self,
        positives: Collection[int],
        count: int | None = None,
        hard: Sequence[int] = (),
    ) -> np.ndarray:
        """`count` (default ratio x len(positives)) product indices, none in `positives`.

        `hard` (the query's shown-but-not-engaged products) come first, in random order and at
        most `count` of them; random catalog products fill the rest, drawn with replacement
        when the catalog outside the positives is small."""
        positives = set(int(p) for p in positives)
        count = self.ratio * len(positives) if count is None else count
        free = self.num_products - len(positives)
        if free < 1:
            raise ValueError(
                f"every one of the {self.num_products} products is engaged with the query: "
                "no negative can be drawn"
            )
        hard = np.array(sorted({int(h) for h in hard} - positives), dtype=np.int64)
        out = np.empty(count, dtype=np.int64)
        filled = min(len(hard), count)
        out[:filled] = self._rng.permutation(hard)[:filled]
        while filled < count:
            draw = self._rng.integers(0, self.num_products, size=2 * (count - filled) + 8)
            draw = draw[[d not in positives for d in draw]][: count - filled]
            out[filled : filled + len(draw)] = draw
            filled += len(draw)
        return out
