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


def test_recommend_raw_maps_ids_both_ways():
    import pandas as pd

    from recarena.data.interactions import Interactions

    df = pd.DataFrame({"user": ["ann", "bob", "bob", "cy", "cy"], "item": ["x", "y", "x", "x", "z"]})
    m = Pop().fit(Interactions.from_frame(df, rating=None, timestamp=None))
    items, scores = m.recommend_raw(["ann", "cy"], k=3)
    assert items[0].tolist() == ["y", "z", None]  # ann saw x; y and z tie on count, lower id first
    assert items[1].tolist() == ["y", None, None]
    assert np.isneginf(scores[1, 1:]).all()


def test_plugin_tests_never_reach_the_users_home(tmp_path):
    """A plugin test that trains through the runner writes under the session's temp folder."""
    import os
    from pathlib import Path

    from recarena import runner
    from recarena.paths import home

    assert Path(os.environ["RECARENA_HOME"]).resolve().is_relative_to(tmp_path.parent.resolve())
    s = runner.train("pop", "synthetic-rank", dataset="synthetic-2000", progress=False, log=lambda *a, **k: None)
    assert Path(s["artifact"]).resolve().is_relative_to(tmp_path.parent.resolve()) and home() != Path.home() / ".recarena"
