import numpy as np
import scipy.sparse as sp
import torch

from recarena.data.synthetic import checkerboard
from recarena.testing import parametrize_with_checks
from recarena_ials import IALS, _csr, _solve


@parametrize_with_checks([IALS(factors=8, iterations=5)])
def test_conformance(model, check):
    check(model)


def test_cg_reaches_the_closed_form_least_squares_solution():
    """With enough CG steps a batched solve equals each user's normal equations,
    (Y^T Y + (alpha - 1) Y_u^T Y_u + reg I) x_u = alpha Y_u^T 1, solved directly."""
    rng = np.random.default_rng(0)
    n, m, d, alpha, reg = 30, 25, 6, 4.0, 0.5
    R = sp.random(n, m, density=0.2, random_state=1, format="csr")
    R.data[:] = 1.0
    Y = torch.from_numpy(rng.normal(size=(m, d)).astype(np.float32))
    X0 = torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32)) * 0.01
    got = _solve(_csr(R), Y, X0, alpha, reg, steps=40).numpy()
    Yn = Y.numpy().astype(np.float64)
    for u in range(n):
        Yu = Yn[R[u].indices]
        A = Yn.T @ Yn + (alpha - 1) * Yu.T @ Yu + reg * np.eye(d)
        want = np.linalg.solve(A, alpha * Yu.sum(0))
        np.testing.assert_allclose(got[u], want, rtol=1e-3, atol=1e-4)


def test_each_sweep_lowers_the_weighted_loss():
    """ALS is coordinate descent on the iALS loss: it never goes up from one sweep to the next."""
    train, _ = checkerboard(n_users=40, n_items=30, per_user=6)
    X = train.csr().toarray() > 0
    alpha, reg = 5.0, 0.1

    def loss(m):
        S = (m.user_factors_ @ m.item_factors_.T).double().numpy()
        W = np.where(X, alpha, 1.0)
        return (W * (X - S) ** 2).sum() + reg * (m.user_factors_.double().pow(2).sum() + m.item_factors_.double().pow(2).sum()).item()

    losses = [loss(IALS(factors=4, iterations=it, reg=reg, alpha=alpha, cg_steps=20).fit(train)) for it in (1, 2, 4, 8)]
    assert all(b <= a + 1e-6 * a for a, b in zip(losses, losses[1:])), losses


def test_separates_the_checkerboard():
    train, test = checkerboard(n_users=40, n_items=40, per_user=10)
    m = IALS(factors=8, iterations=10).fit(train)
    items, _ = m.recommend(np.arange(40), k=5)
    same_class = (items % 2) == (np.arange(40)[:, None] % 2)
    assert same_class.mean() > 0.95
