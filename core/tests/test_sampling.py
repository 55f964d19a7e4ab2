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


@settings(max_examples=60, deadline=None)
@given(pairs=st.sets(st.tuples(st.integers(0, 7), st.integers(0, 30)), min_size=1, max_size=120))
def test_is_positive_is_set_membership_for_every_pair(pairs):
    """The per-user binary search answers exactly like a set, for every (user, item) of the
    grid: users with no positives, rows of one item, the first and last item of a row."""
    arr = np.array(sorted(pairs))
    d = Interactions(arr[:, 0], arr[:, 1], IdMap(range(8)), IdMap(range(31)))
    s = NegativeSampler(d, "uniform", seed=0)
    u, i = np.meshgrid(np.arange(8), np.arange(31), indexing="ij")
    got = s.is_positive(u.ravel(), i.ravel())
    assert got.tolist() == [(a, b) in pairs for a, b in zip(u.ravel().tolist(), i.ravel().tolist())]


def test_popularity_sampling_follows_count_to_the_alpha():
    # item 0: 100 interactions, items 1..9: one each; user 10 has none of them.
    # weights 100**0.75 = 31.62 vs 1 -> P(item 0) = 31.62 / 40.62 = 0.778
    users = list(range(100)) + list(range(9))
    items = [0] * 100 + list(range(1, 10))
    d = Interactions(users, items, IdMap(range(101)), IdMap(range(10)))
    neg = NegativeSampler(d, "popularity", alpha=0.75, seed=0).sample(np.full(20_000, 100), 1).ravel()
    assert abs((neg == 0).mean() - 31.6228 / 40.6228) < 0.015
    uni = NegativeSampler(d, "uniform", seed=0).sample(np.full(20_000, 100), 1).ravel()
    assert abs((uni == 0).mean() - 0.1) < 0.01


def test_user_with_every_item_is_an_error():
    d = Interactions([0, 0], [0, 1], IdMap([0]), IdMap([0, 1]))
    with pytest.raises(RecArenaError, match="every item"):
        NegativeSampler(d).sample(np.array([0]), 1)


def test_eval_negatives_warn():
    d = synthetic(1000, seed=0)
    with pytest.warns(UserWarning, match="full ranking is the default"):
        negs = sample_eval_negatives(d, d.take(np.arange(10)), n=5)
    assert negs.shape == (10, 5)
