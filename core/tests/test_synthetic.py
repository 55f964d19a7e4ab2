import numpy as np
import pytest

from recarena.data.synthetic import checkerboard, synthetic


@pytest.mark.parametrize("n", [1_000, 30_000])
def test_exact_size_distinct_pairs_and_power_law(n):
    d = synthetic(n, seed=0)
    assert len(d) == n
    assert len(np.unique(d.user * d.n_items + d.item)) == n
    counts = np.sort(d.item_counts())[::-1]
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top > 0.2, "the top 10% of items should hold a disproportionate share"
    assert set(np.unique(d.rating)) <= {1, 2, 3, 4, 5} and d.timestamp is not None


def test_seeded():
    a, b, c = synthetic(2000, seed=1), synthetic(2000, seed=1), synthetic(2000, seed=2)
    assert np.array_equal(a.item, b.item) and np.array_equal(a.rating, b.rating)
    assert not np.array_equal(a.item, c.item)


def test_checkerboard_has_two_disjoint_classes():
    train, test = checkerboard()
    assert ((train.user % 2) == (train.item % 2)).all() and ((test.user % 2) == (test.item % 2)).all()
