import numpy as np
import pytest
import torch

from recarena.testing import KIT_TRAINER, _rating_data, parametrize_with_checks
from recarena_rbm import RBM


@parametrize_with_checks([RBM(hidden=16, epochs=5, batch_size=16, lr=0.05), RBM(hidden=8, epochs=5, cd_steps=2, item_based=True)])
def test_conformance(model, check):
    check(model)


def test_learns_more_than_the_mean():
    train, _, test = _rating_data()
    m = RBM(hidden=20, epochs=40, batch_size=10, lr=0.05).fit(train, None, seed=0, trainer=KIT_TRAINER)
    rmse = float(np.sqrt(np.mean((m.predict(test.user, test.item) - test.rating) ** 2)))
    mean_rmse = float(np.sqrt(np.mean((train.rating.mean() - test.rating) ** 2)))
    assert rmse < mean_rmse - 0.03, (rmse, mean_rmse)


def test_free_energy_and_prediction_by_hand():
    """F(v) and the expected rating from the definitions, on one user's softmax units."""
    train, _, _ = _rating_data()
    m = RBM(hidden=4, epochs=1).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net = m.network_
    with torch.no_grad():
        v = net.onehot(torch.tensor([0]))[0]  # [n, K]
        W = net.W.reshape(v.shape[0], v.shape[1], -1)
        act = net.c + torch.einsum("ik,ikj->j", v, W)
        F = -(v * net.b.reshape(v.shape)).sum() - torch.log1p(act.exp()).sum()
        torch.testing.assert_close(net.free_energy(v[None])[0], F)
        h = torch.sigmoid(act)
        p = torch.softmax(net.b.reshape(v.shape) + torch.einsum("j,ikj->ik", h, W), 1)
        want = p @ net.levels
    got = m.predict(np.zeros(v.shape[0], np.int64), np.arange(v.shape[0]))
    known = net.rows.known[net.rows.n_rows:].numpy()  # items with a training rating
    np.testing.assert_allclose(got[known], want.numpy()[known], rtol=1e-5)


def test_continuous_ratings_are_refused():
    from recarena.data.interactions import IdMap, Interactions
    from recarena.errors import RecArenaError

    n = 50
    data = Interactions(np.arange(n) % 5, np.arange(n) % 7, IdMap(np.arange(5)), IdMap(np.arange(7)),
                        np.linspace(1, 5, n).astype(np.float32), rating_scale=(1.0, 5.0))
    with pytest.raises(RecArenaError, match="distinct values"):
        RBM(epochs=1).fit(data, None, seed=0, trainer=KIT_TRAINER)
