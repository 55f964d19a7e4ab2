"""Property tests: every split partitions the data, leaks nothing, is deterministic per seed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recarena.data import splits
from recarena.data.filtering import k_core
from recarena.data.interactions import IdMap, Interactions
from recarena.errors import RecArenaError


@st.composite
def interactions(draw, with_time=True):
    n_users = draw(st.integers(2, 12))
    n_items = draw(st.integers(2, 15))
    pairs = draw(st.sets(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)), min_size=1, max_size=120))
    arr = np.array(sorted(pairs), np.int64)
    ts = np.array(draw(st.lists(st.integers(0, 10**6), min_size=len(arr), max_size=len(arr))), np.int64) if with_time else None
    return Interactions(arr[:, 0], arr[:, 1], IdMap(np.arange(n_users)), IdMap(np.arange(n_items)), np.ones(len(arr), np.float32), ts)


def row_keys(d):
    return sorted(zip(d.user.tolist(), d.item.tolist(), (d.timestamp if d.timestamp is not None else np.zeros(len(d), int)).tolist()))


def assert_partition(data, s):
    parts = [s.train, s.test] + ([s.valid] if s.valid is not None else []) + list(s.extra.values())
    assert sum(len(p) for p in parts) == len(data)
    assert sorted(k for p in parts for k in row_keys(p)) == row_keys(data)
    for p in parts:
        assert p.users is data.users and p.items is data.items


SPLITTERS = {
    "ratio_by_user": lambda d, seed: splits.ratio_by_user(d, (0.8, 0.1, 0.1), seed=seed),
    "ratio_by_user_torch": lambda d, seed: splits.ratio_by_user(d, (0.8, 0.1, 0.1), seed=seed, rng="torch"),
    "ratio_by_user_time": lambda d, seed: splits.ratio_by_user(d, (0.7, 0.3), seed=seed, order="time"),
    "global_random": lambda d, seed: splits.global_random(d, (0.8, 0.1, 0.1), seed=seed),
    "leave_one_out": lambda d, seed: splits.leave_one_out(d, seed=seed),
    "leave_one_out_random": lambda d, seed: splits.leave_one_out(d, seed=seed, order="random"),
    "global_temporal": lambda d, seed: splits.global_temporal(d, (0.6, 0.2, 0.2)),
    "item_holdout": lambda d, seed: splits.item_holdout(d, (0.8, 0.1, 0.1), seed=seed),
}


@pytest.mark.parametrize("name", sorted(SPLITTERS))
@settings(max_examples=60, deadline=None)
@given(data=interactions(), seed=st.integers(0, 2**16))
def test_partition_and_determinism(name, data, seed):
    s1 = SPLITTERS[name](data, seed)
    assert_partition(data, s1)
    s2 = SPLITTERS[name](data, seed)
    for a, b in zip((s1.train, s1.valid, s1.test), (s2.train, s2.valid, s2.test)):
        if a is not None:
            assert row_keys(a) == row_keys(b)


@settings(max_examples=60, deadline=None)
@given(data=interactions())
def test_temporal_splits_do_not_leak_the_future(data):
    s = splits.leave_one_out(data, seed=0, order="time")
    for u in np.unique(s.test.user):
        t_test = s.test.timestamp[s.test.user == u].min()
        assert (s.train.timestamp[s.train.user == u] <= t_test).all()
    g = splits.global_temporal(data, (0.6, 0.2, 0.2))
    if len(g.train) and len(g.test):
        assert g.train.timestamp.max() <= g.test.timestamp.min()


@settings(max_examples=60, deadline=None)
@given(data=interactions(), seed=st.integers(0, 1000))
def test_ratio_by_user_sizes_follow_recbole_rule(data, seed):
    s = splits.ratio_by_user(data, (0.8, 0.1, 0.1), seed=seed)
    for u in np.unique(data.user):
        n = int((data.user == u).sum())
        nv, nt = int((s.valid.user == u).sum()), int((s.test.user == u).sum())
        if n >= 10:
            assert nv == n // 10 and nt == n // 10


@settings(max_examples=40, deadline=None)
@given(data=interactions(with_time=False), seed=st.integers(0, 1000))
def test_user_holdout_users_never_trained(data, seed):
    n_users = len(np.unique(data.user))
    if n_users < 4:
        return
    s = splits.user_holdout(data, 1, 1, seed=seed)
    assert_partition(data, s)
    held = set(s.test.user.tolist()) | set(s.valid.user.tolist()) | set(s.extra["test_fold_in"].user.tolist())
    assert not held & set(s.train.user.tolist())


@settings(max_examples=60, deadline=None)
@given(data=interactions(), seed=st.integers(0, 1000))
def test_item_holdout_items_never_trained_and_whole(data, seed):
    """Cold items: a validation or test item has no training row, every row of it is in its
    part, and the parts hold round(10%) of the items each."""
    s = splits.item_holdout(data, (0.8, 0.1, 0.1), seed=seed)
    trained = set(s.train.item.tolist())
    for part in (s.valid, s.test):
        items = set(part.item.tolist())
        assert not items & trained
        assert len(part) == int(np.isin(data.item, list(items)).sum())
    n = len(np.unique(data.item))
    assert len(np.unique(s.valid.item)) == round(n * 0.1) and len(np.unique(s.test.item)) == round(n * 0.1)


def test_item_holdout_ratios_must_be_three():
    d = Interactions([0, 1], [0, 1], IdMap([0, 1]), IdMap([0, 1]))
    with pytest.raises(RecArenaError, match="item_holdout ratios must be 3 numbers summing to 1"):
        splits.item_holdout(d, (0.9, 0.1))


def test_temporal_split_without_timestamps_is_a_clear_error():
    d = Interactions([0, 1], [0, 1], IdMap([0, 1]), IdMap([0, 1]))
    with pytest.raises(RecArenaError, match="no timestamps"):
        splits.global_temporal(d)


def test_k_core_repeats_until_stable():
    # item 2 has 2 users, but user 2's removal (1 row) drops item 2 below 2: cascade
    u = [0, 0, 0, 1, 1, 1, 2, 3, 3]
    i = [0, 1, 2, 0, 1, 3, 2, 0, 1]
    d = Interactions(u, i, IdMap(range(4)), IdMap(range(4)))
    out = k_core(d, user_k=2, item_k=2)
    assert set(out.users.raw.tolist()) == {0, 1, 3} and set(out.items.raw.tolist()) == {0, 1}
    assert (np.bincount(out.user) >= 2).all() and (np.bincount(out.item) >= 2).all()


def test_ratio_by_user_torch_rng_is_recbole_shuffle_then_group():
    """RecBole 1.2.1: torch.manual_seed(seed); rows[torch.randperm(n)]; per user in that order,
    train first, then valid, then test. One user with 20 rows: valid and test are the rows the
    permutation puts at positions 16-17 and 18-19."""
    import torch

    n = 20
    d = Interactions(np.zeros(n, np.int64), np.arange(n), IdMap(np.arange(1)), IdMap(np.arange(n)), np.ones(n, np.float32))
    s = splits.ratio_by_user(d, (0.8, 0.1, 0.1), seed=2020, rng="torch")
    torch.manual_seed(2020)
    perm = torch.randperm(n).numpy()
    assert sorted(s.valid.item.tolist()) == sorted(perm[16:18].tolist())
    assert sorted(s.test.item.tolist()) == sorted(perm[18:].tolist())
    with pytest.raises(RecArenaError, match="rng must be"):
        splits.ratio_by_user(d, seed=1, rng="mersenne")


def test_user_holdout_drops_items_no_training_user_has_then_splits_each_held_out_user():
    from recarena.data.interactions import IdMap, Interactions
    from recarena.data.splits import user_holdout

    # every user has items 0..4 and a personal item 5 + u that no one else has
    n = 10
    rows = [(u, i) for u in range(n) for i in range(5)] + [(u, 5 + u) for u in range(n)]
    d = Interactions([u for u, _ in rows], [i for _, i in rows], IdMap(range(n)), IdMap(range(5 + n)))
    s = user_holdout(d, 2, 2, fold_in=0.8, seed=3, drop_unseen_items=True)
    held = set(s.valid.user.tolist()) | set(s.test.user.tolist())
    assert len(held) == 4 and not held & set(s.train.user.tolist())
    assert sorted(set(s.train.item.tolist())) == sorted(set(range(5)) | {5 + u for u in range(n) if u not in held})
    for part, fold in ((s.valid, s.extra["valid_fold_in"]), (s.test, s.extra["test_fold_in"])):
        for u in set(part.user.tolist()):
            target, given = part.item[part.user == u], fold.item[fold.user == u]
            # their personal item is gone; of the 5 left, int(0.2 * 5) = 1 is evaluated, 4 folded in
            assert sorted(target.tolist() + given.tolist()) == [0, 1, 2, 3, 4] and len(target) == 1
