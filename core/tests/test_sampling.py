import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recarena.data.interactions import IdMap, Interactions
from recarena.data.sampling import NegativeSampler, sample_eval_negatives
from recarena.data.synthetic import synthetic
from recarena.errors import RecArenaError


@settings(max_examples=50, deadline=None)
@given(
    pairs=st.sets(st.tuples(st.integers(0, 5), st.integers(0, 9)), min_size=1, max_size=40),
    strategy=st.sampled_from(["uniform", "popularity"]),
    seed=st.integers(0, 100),
)
def test_negatives_are_never_positives(pairs, strategy, seed):
    arr = np.array(sorted(pairs))
    d = Interactions(arr[:, 0], arr[:, 1], IdMap(range(6)), IdMap(range(11)))  # item 10 is never seen
    s = NegativeSampler(d, strategy, seed=seed)
    users = np.repeat(np.unique(d.user), 3)
    neg = s.sample(users, 4)
    assert neg.shape == (len(users), 4)
    pos = set(map(tuple, arr.tolist()))
    assert not any((u, j) in pos for u, row in zip(users, neg) for j in row)
    again = NegativeSampler(d, strategy, seed=seed).sample(users, 4)
    assert np.array_equal(neg, again)


def test_popularity_sampling_prefers_popular_items():
    d = synthetic(20_000, seed=1)
    s = NegativeSampler(d, "popularity", seed=0)
    neg = s.sample(np.zeros(20_000, np.int64), 1).ravel()
    counts = d.item_counts()
    assert counts[neg].mean() > 1.5 * counts.mean()


def test_user_with_every_item_is_an_error():
    d = Interactions([0, 0], [0, 1], IdMap([0]), IdMap([0, 1]))
    with pytest.raises(RecArenaError, match="every item"):
        NegativeSampler(d).sample(np.array([0]), 1)


def test_eval_negatives_warn():
    d = synthetic(1000, seed=0)
    with pytest.warns(UserWarning, match="full ranking is the default"):
        negs = sample_eval_negatives(d, d.take(np.arange(10)), n=5)
    assert negs.shape == (10, 5)
