import numpy as np

from recarena.data.synthetic import synthetic
from recarena.testing import parametrize_with_checks
from recarena_pop import Pop


@parametrize_with_checks(
    [Pop()],
    expected_failures={"check_ranker_checkerboard": "popularity is the same list for every user, so it cannot separate the two classes"},
)
def test_conformance(model, check):
    check(model)


def test_ranks_by_interaction_count():
    data = synthetic(2000, seed=1)
    m = Pop().fit(data)
    items, _ = m.recommend([0], k=5, exclude_seen=False)
    counts = data.item_counts()
    assert list(items[0]) == list(np.argsort(-counts, kind="stable")[:5])
