import numpy as np

from recarena.data.interactions import IdMap, Interactions
from recarena.testing import parametrize_with_checks
from recarena_itemknn import ItemKNN


@parametrize_with_checks([ItemKNN(k=20)])
def test_conformance(model, check):
    check(model)


def test_hand_computed_cosine_scores():
    # users x items: u0 = {0, 1}, u1 = {0, 2}, u2 = {1}
    d = Interactions([0, 0, 1, 1, 2], [0, 1, 0, 2, 1], IdMap(range(3)), IdMap(range(3)))
    m = ItemKNN(k=2).fit(d)
    # cos(0,1) = 1/sqrt(2*2) = .5, cos(0,2) = 1/sqrt(2*1) = .7071, cos(1,2) = 0
    s = m.score(np.array([2])).numpy()[0]  # u2 has item 1: scores = sims to item 1
    np.testing.assert_allclose(s, [0.5, 0.0, 0.0], atol=1e-5)
    s0 = m.score(np.array([0])).numpy()[0]
    np.testing.assert_allclose(s0[2], 1 / np.sqrt(2), atol=1e-5)
    # k=1: item 0 keeps only neighbour 2, item 1 keeps 0, item 2 keeps 0. For u0 = {0, 1}:
    # score(0) = 0 (its neighbour 2 is not u0's), score(1) = sim(0,1) = .5, score(2) = sim(0,2)
    m1 = ItemKNN(k=1).fit(d)
    np.testing.assert_allclose(m1.score(np.array([0])).numpy()[0], [0.0, 0.5, 1 / np.sqrt(2)], atol=1e-5)
