import numpy as np
import scipy.sparse as sp
import torch

from recarena.data.filtering import to_implicit
from recarena.data.synthetic import checkerboard
from recarena.testing import parametrize_with_checks
from recarena_bpr import BPR
from recarena_lightgcn import LightGCN, LightGCNNet, normalized_adjacency


@parametrize_with_checks([LightGCN(dim=16, n_layers=2, epochs=12, batch_size=128, lr=0.05)])
def test_conformance(model, check):
    check(model)


def test_normalized_adjacency_by_hand():
    """User 0 rated items 0 and 1, user 1 item 1: degrees u0 2, u1 1, i0 1, i1 2, so
    Â[u0, i1] = 1 / sqrt(2 * 2), Â[u1, i1] = 1 / sqrt(1 * 2); symmetric, and a user
    without ratings (u2) gets a zero row."""
    R = sp.csr_matrix(np.array([[1, 1], [0, 1], [0, 0]], dtype=np.float32))
    A = normalized_adjacency(R).toarray()
    u0, u1, u2, i0, i1 = range(5)
    assert A.shape == (5, 5)
    np.testing.assert_allclose(A, A.T)
    np.testing.assert_allclose([A[u0, i0], A[u0, i1], A[u1, i1]], [1 / np.sqrt(2), 0.5, 1 / np.sqrt(2)], rtol=1e-6)
    assert A[u2].sum() == 0 and A[u0, u1] == 0 and A[i0, i1] == 0


def test_propagation_is_the_mean_of_the_layers_and_its_gradient_is_autograds():
    R = sp.random(7, 5, density=0.4, random_state=3, format="csr")
    torch.manual_seed(0)
    net = LightGCNNet(normalized_adjacency(R), 7, 5, 3, n_layers=2)
    dense = torch.from_numpy(normalized_adjacency(R).toarray())
    u, i = net.propagate()
    e0 = torch.cat([net.ego.user_emb.weight, net.ego.item_emb.weight])
    want = (e0 + dense @ e0 + dense @ (dense @ e0)) / 3
    torch.testing.assert_close(torch.cat([u, i]), want, rtol=1e-5, atol=1e-6)
    g = torch.randn(12, 3)
    (torch.cat([u, i]) * g).sum().backward()
    ours = torch.cat([net.ego.user_emb.weight.grad, net.ego.item_emb.weight.grad])
    e = e0.detach().clone().requires_grad_(True)
    ((e + dense @ e + dense @ (dense @ e)) / 3 * g).sum().backward()
    torch.testing.assert_close(ours, e.grad, rtol=1e-5, atol=1e-6)


def test_without_layers_it_is_bpr_mf():
    """n_layers = 0: no propagation, the same parameters, initial weights and loss as bpr,
    so the same seed gives bpr's predictions."""
    train = to_implicit(checkerboard(n_users=30, n_items=24, per_user=6)[0])
    kw = dict(dim=8, epochs=5, batch_size=64, lr=0.02, reg=1e-3, n_neg=2)
    ours = LightGCN(n_layers=0, **kw).fit(train)
    bpr = BPR(**kw).fit(train)
    users = np.arange(30)
    np.testing.assert_allclose(ours.score(users), bpr.score(users), rtol=1e-4, atol=1e-5)
    # and propagation changes them
    assert not np.allclose(LightGCN(n_layers=2, **kw).fit(train).score(users), bpr.score(users), atol=1e-3)


def test_separates_the_checkerboard():
    train = to_implicit(checkerboard(n_users=40, n_items=40, per_user=10)[0])
    m = LightGCN(dim=8, n_layers=2, epochs=30, batch_size=64, lr=0.02).fit(train)
    items, _ = m.recommend(np.arange(40), k=5)
    same_class = (items % 2) == (np.arange(40)[:, None] % 2)
    assert same_class.mean() > 0.95
