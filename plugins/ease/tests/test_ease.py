import numpy as np

from recarena.data.synthetic import checkerboard
from recarena.testing import parametrize_with_checks
from recarena_ease import EASE


@parametrize_with_checks([EASE(reg=10.0)])
def test_conformance(model, check):
    check(model)


def test_weights_solve_the_closed_form():
    train, _ = checkerboard(n_users=12, n_items=10, per_user=3)
    m = EASE(reg=5.0).fit(train)
    X = train.csr().toarray()
    X[X > 0] = 1
    B = m.B_.numpy().astype(np.float64)
    # stationarity of ||X - XB||^2 + reg ||B||^2 off the diagonal: (X^T X + reg I) B = X^T X - diag(mu)
    G = X.T @ X
    lhs = (G + 5.0 * np.eye(10)) @ B - G
    off = lhs - np.diag(np.diag(lhs))
    assert np.abs(off).max() < 1e-4 and np.allclose(np.diag(B), 0)
