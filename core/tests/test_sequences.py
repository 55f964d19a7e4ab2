"""Windows over time-ordered histories, and the context a sequential protocol gives at test time."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recarena.base import Capabilities, Recommender, Task
from recarena.data.interactions import IdMap, Interactions
from recarena.errors import RecArenaError
from recarena.eval.evaluator import RankingEvaluator
from recarena.sequences import last_items, training_windows

histories = st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=12), min_size=1, max_size=8)


def _csr(rows):
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    return indptr, np.asarray([i for r in rows for i in r], np.int64)


@settings(max_examples=60, deadline=None)
@given(histories, st.integers(1, 6))
def test_last_items_are_the_newest_items_right_aligned(rows, length):
    pad = 10
    got = last_items(np.arange(len(rows)), *_csr(rows), length, pad).numpy()
    for r, row in zip(got, rows):
        want = ([pad] * length + row)[-length:]
        assert r.tolist() == want


@settings(max_examples=60, deadline=None)
@given(histories, st.integers(1, 6))
def test_training_windows_pair_each_position_with_its_next_item(rows, length):
    pad = 10
    users, inputs, targets = training_windows(*_csr(rows), length, pad)
    assert users.tolist() == [u for u, r in enumerate(rows) if len(r) >= 2]
    for u, x, t in zip(users.tolist(), inputs.numpy(), targets.numpy()):
        row = rows[u]
        assert x.tolist() == ([pad] * length + row[:-1])[-length:]
        assert t.tolist() == [pad if a == pad else b for a, b in zip(x.tolist(), ([pad] * length + row[1:])[-length:])]


def test_sequences_follow_time_then_row_order_and_keep_repeats():
    d = Interactions([1, 0, 1, 1, 0], [4, 2, 3, 4, 1], IdMap(range(2)), IdMap(range(5)), timestamp=[5, 2, 1, 5, 1])
    indptr, items = d.sequences()
    assert indptr.tolist() == [0, 2, 5] and items.tolist() == [1, 2, 3, 4, 4]


class LastItemNext(Recommender):
    """Scores item (last + 1) highest: what a sequence model with context would learn."""

    capabilities = Capabilities(tasks={Task.SEQUENTIAL}, context=True)

    def __init__(self):
        pass

    def _fit(self, train, valid, monitor):
        self.seq_ = train.sequences()

    def _from(self, users, indptr, indices):
        last = last_items(users, indptr, indices, 1, 0)[:, 0]
        return torch.nn.functional.one_hot((last + 1) % self.n_items_, self.n_items_).float()

    def _score(self, users):
        return self._from(users, *self.seq_)

    def _score_history(self, users, indptr, indices):
        return self._from(users, indptr, indices)


def _walk_split():
    # each user walks 0, 1, 2, ...; train holds all but the last two steps
    n_users, n_items, n = 5, 12, 7
    mk = lambda lo, hi: Interactions(np.repeat(np.arange(n_users), hi - lo), np.tile(np.arange(lo, hi), n_users),  # noqa: E731
                                     IdMap(range(n_users)), IdMap(range(n_items)),
                                     timestamp=np.tile(np.arange(lo, hi), n_users))
    return mk(0, n - 2), mk(n - 2, n - 1), mk(n - 1, n)


def test_context_gives_the_validation_item_at_test_time():
    train, valid, test = _walk_split()
    m = LastItemNext().fit(train)
    hist = train.concat(valid).sequences()
    with_context = RankingEvaluator(test, [train, valid], ["hit@1"], context=hist).evaluate(m)
    without = RankingEvaluator(test, [train, valid], ["hit@1"]).evaluate(m)
    # from training alone the model predicts the validation item, which is masked: a miss
    assert with_context["hit@1"] == 1.0 and without["hit@1"] == 0.0


def test_a_protocol_with_context_refuses_refit(tmp_path):
    from recarena.protocols import load_protocol

    p = tmp_path / "p.yaml"
    p.write_text("dataset: any\ntask: sequential\nsplit: {method: leave_one_out}\nmetrics: [ndcg@10]\n"
                 "select: ndcg@10\neval: {context: true}\nrefit: true\n")
    with pytest.raises(RecArenaError, match="refit"):
        load_protocol(str(p))
    p.write_text("dataset: any\ntask: sequential\nsplit: {method: leave_one_out}\nmetrics: [ndcg@10]\n"
                 "select: ndcg@10\neval: {contxt: true}\n")
    with pytest.raises(RecArenaError, match="contxt"):
        load_protocol(str(p))


def test_s3rec_loo_gives_train_and_validation_in_time_order_at_test_time():
    from recarena.protocols import load_protocol, prepare

    proto = load_protocol("s3rec-loo")
    assert proto["eval"] == {"context": True} and not proto.get("refit")
    p = prepare(proto, "synthetic-2000")
    s = p.split
    for part, hist in (("valid", s.train), ("test", s.train.concat(s.valid))):
        ctx = p.evaluator(part).context
        want = hist.sequences()
        assert np.array_equal(ctx[0], want[0]) and np.array_equal(ctx[1], want[1])
    # each user's validation item is the last of their test-time context
    u = int(s.valid.user[0])
    assert ctx[1][ctx[0][u + 1] - 1] == s.valid.item[0]


@settings(max_examples=60, deadline=None)
@given(histories, st.integers(1, 6))
def test_every_window_makes_each_item_after_the_first_a_target_once(rows, length):
    pad = 10
    users, inputs, targets = training_windows(*_csr(rows), length, pad, every=True)
    for u, row in enumerate(rows):
        mine = (users == u).numpy()
        x, t = inputs.numpy()[mine], targets.numpy()[mine]
        real = t != pad
        # each (previous item, next item) pair of the history, exactly once
        got = sorted(zip(x[real].tolist(), t[real].tolist()))
        assert got == sorted(zip(row[:-1], row[1:]))
        assert len(x) == (-(-(len(row) - 1) // length) if len(row) >= 2 else 0)
    # the first window of each user is the one the default ("last") gives
    u0, x0, t0 = training_windows(*_csr(rows), length, pad)
    first = np.r_[True, users.numpy()[1:] != users.numpy()[:-1]] if len(users) else np.zeros(0, bool)
    assert np.array_equal(inputs.numpy()[first], x0.numpy()) and np.array_equal(targets.numpy()[first], t0.numpy())


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 14), min_size=1, max_size=6), st.integers(1, 6), st.data())
def test_overlapping_windows_make_each_item_a_target_once_after_at_least_length_minus_step_items(sizes, length, data):
    step = data.draw(st.integers(1, length))
    # distinct items, so an item names its place in its history
    rows, nxt = [], 0
    for n in sizes:
        rows.append(list(range(nxt, nxt + n)))
        nxt += n
    pad = nxt
    users, inputs, targets = training_windows(*_csr(rows), length, pad, every=True, step=step)
    for u, row in enumerate(rows):
        mine = (users == u).numpy()
        x, t = inputs.numpy()[mine], targets.numpy()[mine]
        # each item after the first is a target exactly once
        assert sorted(t[t != pad].tolist()) == row[1:]
        for xi, ti in zip(x, t):
            for p in np.flatnonzero(ti != pad):
                k = row.index(int(ti[p]))
                context = [int(v) for v in xi[: p + 1] if v != pad]
                # what the window shows before a target is the items right before it ...
                assert context == row[k - len(context):k]
                # ... at least length - step + 1 of them once the history is that long
                assert len(context) >= min(k, length - step + 1)
        if len(row) >= 2:
            assert len(x) == 1 + max(0, -(-(len(row) - 1 - length) // step))
        else:
            assert len(x) == 0
    # step = length is what "all" gave
    a = training_windows(*_csr(rows), length, pad, every=True)
    b = training_windows(*_csr(rows), length, pad, every=True, step=length)
    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(a, b))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 14), min_size=1, max_size=6), st.integers(1, 6), st.integers(2, 5), st.data())
def test_a_horizon_gives_each_position_the_next_k_items_of_the_whole_sequence(sizes, length, k, data):
    every = data.draw(st.booleans())
    step = data.draw(st.integers(1, length)) if every else None
    rows, nxt = [], 0
    for n in sizes:  # distinct items: an item names its place in its history
        rows.append(list(range(nxt, nxt + n)))
        nxt += n
    pad = nxt
    users, inputs, first = training_windows(*_csr(rows), length, pad, every=every, step=step)
    u2, i2, targets = training_windows(*_csr(rows), length, pad, every=every, step=step, horizon=k)
    assert targets.shape == (*first.shape, k)
    one = training_windows(*_csr(rows), length, pad, every=every, step=step, horizon=1)
    assert torch.equal(one[2], first)  # horizon 1: the next item, as before
    # the same rows; the first target is the next item
    assert torch.equal(users, u2) and torch.equal(inputs, i2) and torch.equal(targets[..., 0], first)
    for u, t in zip(users.numpy(), targets.numpy()):
        row = rows[u]
        for p in np.flatnonzero(t[:, 0] != pad):
            at = row.index(int(t[p, 0]))
            # the k items from the first target on, across the window's end, pad past the history's
            want = row[at:at + k]
            assert t[p].tolist() == want + [pad] * (k - len(want))
        assert (t[t[:, 0] == pad] == pad).all()


def test_a_target_horizon_with_sampled_negatives_is_refused_before_training():
    from torch import nn

    from recarena.data.synthetic import walks
    from recarena.sequences import SequentialRecommender

    class Horizon(SequentialRecommender):
        def __init__(self, loss_type="bce", max_len=4, train_windows="last", n_neg=1, neg_sampling="uniform",
                     lr=0.01, weight_decay=0.0, epochs=1, batch_size=16, optimizer="adam"):
            self.loss_type, self.max_len, self.train_windows, self.n_neg = loss_type, max_len, train_windows, n_neg
            self.neg_sampling, self.lr, self.weight_decay = neg_sampling, lr, weight_decay
            self.epochs, self.batch_size, self.optimizer = epochs, batch_size, optimizer

        def target_horizon(self):
            return 3

        def build_encoder(self, n_items):
            net = nn.Module()
            net.item_emb = nn.Embedding(n_items + 1, 4, padding_idx=n_items)
            return net

        def encode(self, network, seq):
            return network.item_emb(seq)

    with pytest.raises(RecArenaError, match='next 3 items train with loss_type "ce" only, got "bce"'):
        Horizon().fit(walks(), trainer={"progress_bar": False, "logger": "none"})
    Horizon(loss_type="ce").fit(walks(), trainer={"progress_bar": False, "logger": "none"})  # ce trains
