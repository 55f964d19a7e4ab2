import numpy as np

from recarena.data.interactions import IdMap, Interactions
from recarena.testing import parametrize_with_checks
from recarena_caser import Caser


@parametrize_with_checks([Caser(dim=8, L=3, n_h=4, n_v=2, epochs=20, lr=0.01, batch_size=128, dropout=0.0)])
def test_conformance(model, check):
    check(model)


def test_windows_hold_the_previous_items_in_time_order():
    # user 0 watched 5, 6, 7 (timestamps out of row order); user 1 watched 8, 9
    d = Interactions([0, 0, 0, 1, 1], [7, 5, 6, 8, 9], IdMap(range(2)), IdMap(range(10)), timestamp=[3, 1, 2, 1, 2])
    users, windows, targets, last = Caser(L=2)._sequences(d)
    pad = 10
    assert users.tolist() == [0, 0, 1] and targets.tolist() == [6, 7, 9]
    assert windows.tolist() == [[pad, 5], [5, 6], [pad, 8]]
    assert last.tolist() == [[6, 7], [8, 9]]


def test_learns_a_deterministic_successor():
    # every user walks item k -> k+1 (mod 12): the next item after the history is known
    rows = [(u, (u + t) % 12, t) for u in range(60) for t in range(8)]
    u, i, t = (np.array(x) for x in zip(*rows))
    d = Interactions(u, i, IdMap(range(60)), IdMap(range(12)), timestamp=t)
    m = Caser(dim=16, L=3, n_h=4, n_v=2, epochs=40, lr=0.01, batch_size=64, dropout=0.0).fit(d, trainer={"progress_bar": False, "logger": "none"})
    items, _ = m.recommend(np.arange(60), k=1)  # among the 4 unseen items
    want = (np.arange(60) + 8) % 12
    assert (items[:, 0] == want).mean() > 0.9
