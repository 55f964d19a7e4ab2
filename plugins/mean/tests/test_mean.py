import numpy as np
import pytest

from recarena.data.interactions import IdMap, Interactions
from recarena.testing import parametrize_with_checks
from recarena_mean import Mean


@parametrize_with_checks([Mean(), Mean(mode="global")])
def test_conformance(model, check):
    check(model)


def _tiny():
    # user 0 rates items 0, 1 with 5, 3; user 1 rates item 0 with 4
    return Interactions([0, 0, 1], [0, 1, 0], IdMap([0, 1, 2]), IdMap([0, 1, 2]), np.array([5.0, 3.0, 4.0], np.float32),
                        name="tiny", rating_scale=(1.0, 5.0))


def test_global_mean_by_hand():
    m = Mean(mode="global").fit(_tiny())
    np.testing.assert_allclose(m.predict([0, 1, 2], [2, 1, 0]), [4.0, 4.0, 4.0])


def test_damped_baseline_by_hand():
    """mu = 4; damping 1: b_i0 = (1 + 0) / (1 + 2) = 1/3, b_i1 = -1 / 2; b_u0 = ((5 - 4 - 1/3) +
    (3 - 4 + 1/2)) / (1 + 2) = 1/18, b_u1 = (4 - 4 - 1/3) / 2 = -1/6; user 2 and item 2 unseen: 0."""
    m = Mean(damping=1.0).fit(_tiny())
    got = m.predict([0, 0, 1, 2, 2], [0, 1, 0, 2, 0])
    np.testing.assert_allclose(got, [4 + 1 / 18 + 1 / 3, 4 + 1 / 18 - 1 / 2, 4 - 1 / 6 + 1 / 3, 4.0, 4 + 1 / 3], rtol=1e-6)


def test_implicit_data_is_refused():
    d = _tiny()
    d.rating = None
    with pytest.raises(ValueError, match="needs explicit ratings"):
        Mean().fit(d)
