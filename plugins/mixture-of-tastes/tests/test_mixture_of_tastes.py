import numpy as np
import pytest
import torch

from recarena.data.filtering import to_implicit
from recarena.data.interactions import IdMap, Interactions
from recarena.data.synthetic import checkerboard
from recarena.testing import parametrize_with_checks
from recarena_bpr import BPR
from recarena_mixture_of_tastes import MixtureOfTastes, mix


@parametrize_with_checks([MixtureOfTastes(dim=8, n_tastes=3, epochs=12, batch_size=128, lr=0.05)])
def test_conformance(model, check):
    check(model)


def test_mix_by_hand():
    """One user, tastes (1, 0) and (0, 1), attention (2, 0) and (0, 0); item (1, 3):
    attention logits 2 and 0, affinities 1 and 3, so s = (e^2 * 1 + 1 * 3) / (e^2 + 1)."""
    t = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    a = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    e = torch.tensor([[1.0, 3.0]])
    want = (np.e**2 + 3) / (np.e**2 + 1)
    assert mix(t, a, e).item() == pytest.approx(want, rel=1e-6)
    assert mix(t, a, e.unsqueeze(0)).item() == pytest.approx(want, rel=1e-6)


def test_one_taste_is_bpr_mf():
    train = to_implicit(checkerboard(n_users=30, n_items=24, per_user=6)[0])
    kw = dict(dim=8, epochs=5, batch_size=64, lr=0.02, reg=1e-3, n_neg=2)
    ours = MixtureOfTastes(n_tastes=1, **kw).fit(train)
    bpr = BPR(**kw).fit(train)
    users = np.arange(30)
    np.testing.assert_allclose(ours.score(users), bpr.score(users), rtol=1e-4, atol=1e-5)
    assert not np.allclose(MixtureOfTastes(n_tastes=3, **kw).fit(train).score(users), bpr.score(users), atol=1e-3)


def test_two_tastes_represent_what_one_cannot():
    """Three groups of users each like two of three item blocks ({0, 1}, {1, 2}, {0, 2}). With
    one dimension, a single taste orders the items on a line and likes one end of it, so no
    ordering of the blocks serves all three groups; two tastes (one per liked block) can.
    Each user rated 6 of the 10 items of each block it likes; the 8 it did not are the answer."""
    rng = np.random.default_rng(0)
    likes = [(0, 1), (1, 2), (0, 2)]
    rows = [(u, b * 10 + int(i)) for u in range(90) for b in likes[u % 3] for i in rng.choice(10, 6, replace=False)]
    arr = np.array(rows, np.int64)
    train = Interactions(arr[:, 0], arr[:, 1], IdMap(np.arange(90)), IdMap(np.arange(30)), name="three-groups")
    liked = np.array([[b in likes[u % 3] for b in np.arange(30) // 10] for u in range(90)])

    def hit_rate(k_tastes):
        m = MixtureOfTastes(dim=1, n_tastes=k_tastes, epochs=80, batch_size=64, lr=0.05, n_neg=4).fit(train)
        top, _ = m.recommend(np.arange(90), k=8)
        return np.take_along_axis(liked, np.asarray(top), 1).mean()

    one, two = hit_rate(1), hit_rate(2)
    assert two > 0.9 and one < 0.8, (one, two)
