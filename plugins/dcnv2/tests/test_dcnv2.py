import numpy as np
import pytest

from recarena.ctr import FactorizationMachine
from recarena.data.filtering import binarize
from recarena.errors import RecArenaError
from recarena.testing import KIT_TRAINER, _rating_data, parametrize_with_checks
from recarena_dcnv2 import DCNV2


@parametrize_with_checks([DCNV2(dim=4, hidden=(8,), epochs=3, lr=0.01, cross_reg=0.01),
                          DCNV2(dim=4, hidden=(8,), rank=2, n_experts=3, structure="parallel", epochs=2, lr=0.01,
                                pretrain_epochs=2, reg=0.01),
                          DCNV2(dim=4, hidden=(8,), structure="parallel", linear=True, fm_start=True, epochs=2,
                                lr=0.01, pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)


def test_fm_start_gives_the_fitted_fms_logits():
    """With fm_start the model, before its own training, computes exactly the FM it starts from."""
    train = binarize(_rating_data()[0], 4)
    model = DCNV2(dim=3, hidden=(8,), epochs=1, lr=0.0, pretrain_epochs=2, pretrain_lr=0.02, reg=0.01,
                  structure="parallel", cross_layers=3, linear=True, fm_start=True, batch_norm=False)
    model.fit(train, seed=1, trainer=KIT_TRAINER)
    fm = FactorizationMachine(dim=3, lr=0.02, reg=0.01, epochs=2, batch_size=model.batch_size)
    fm.fit(train, seed=1, trainer=KIT_TRAINER)
    np.testing.assert_allclose(model.predict(train.user, train.item), fm.predict(train.user, train.item),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [{"linear": False}, {"structure": "stacked"}, {"rank": 2}, {"cross_layers": 1},
                                 {"pretrain_epochs": 0}])
def test_fm_start_names_what_it_needs_before_any_training(bad):
    ok = {"pretrain_epochs": 50, "linear": True, "structure": "parallel", "fm_start": True}
    with pytest.raises(RecArenaError, match="fm_start=True needs") as e:
        DCNV2(**{**ok, **bad}).fit(binarize(_rating_data()[0], 4), seed=0, trainer=KIT_TRAINER)
    assert str(next(iter(bad))).split("_")[0] in str(e.value)
