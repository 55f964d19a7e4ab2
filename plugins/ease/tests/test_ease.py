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


def test_fold_in_known_answer():
    """Strong generalization by hand: user 3 never trains; their fold-in items {0, 2} are the
    history EASE scores them from, those items are masked, and the held-out item 1 is found."""
    from recarena.data.interactions import IdMap, Interactions
    from recarena.eval.evaluator import RankingEvaluator

    users, items = IdMap(range(4)), IdMap(range(4))
    train = Interactions([0, 0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2, 3], users, items)
    fold_in = Interactions([3, 3], [0, 2], users, items)
    target = Interactions([3], [1], users, items)
    m = EASE(reg=1.0).fit(train)
    X = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]], float)
    P = np.linalg.inv(X.T @ X + np.eye(4))
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    want = np.array([1, 0, 1, 0.0]) @ B  # the fold-in row times B
    indptr, indices = fold_in.user_item_sets()
    got = m.score_history([3], indptr, indices).numpy()[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(m.score([3]).numpy() == 0)  # from training alone user 3 has nothing
    # ranking items 1 and 3 (0 and 2 are masked): item 1 scores higher, so it is first
    assert want[1] > want[3]
    ev = RankingEvaluator(target, [train, fold_in], ["ndcg@2", "recall_norm@1", "hit@1"], fold_in=True)
    assert ev.evaluate(m) == {"ndcg@2": 1.0, "recall_norm@1": 1.0, "hit@1": 1.0}
