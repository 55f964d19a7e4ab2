import numpy as np
import pytest

from recarena.ctr import FactorizationMachine
from recarena.data.filtering import binarize
from recarena.errors import RecArenaError
from recarena.testing import KIT_TRAINER, _rating_data, parametrize_with_checks
from recarena_xdeepfm import XDeepFM


@parametrize_with_checks([XDeepFM(dim=4, hidden=(8,), cin_layers=(6, 4), epochs=3, lr=0.01),
                          XDeepFM(dim=4, hidden=(), cin_layers=(5,), split_half=False, epochs=2, lr=0.01,
                                  pretrain_epochs=2, reg=0.01, cin_activation="relu"),
                          XDeepFM(dim=4, hidden=(8,), cin_layers=(4, 4), epochs=2, lr=0.01, pretrain_epochs=2,
                                  fm_start=True)])
def test_conformance(model, check):
    check(model)


@pytest.mark.parametrize("split_half,layers", [(True, (4, 6)), (False, (3,))])
def test_fm_start_gives_the_fitted_fms_logits(split_half, layers):
    """With fm_start the model, before its own training, computes exactly the FM it starts from."""
    train = binarize(_rating_data()[0], 4)
    model = XDeepFM(dim=3, hidden=(8,), cin_layers=layers, split_half=split_half, epochs=1, lr=0.0,
                    pretrain_epochs=2, pretrain_lr=0.02, reg=0.01, fm_start=True)
    model.fit(train, seed=1, trainer=KIT_TRAINER)
    fm = FactorizationMachine(dim=3, lr=0.02, reg=0.01, epochs=2, batch_size=model.batch_size)
    fm.fit(train, seed=1, trainer=KIT_TRAINER)
    np.testing.assert_allclose(model.predict(train.user, train.item), fm.predict(train.user, train.item),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [{"cin_activation": "relu"}, {"pretrain_epochs": 0}])
def test_fm_start_names_what_it_needs_before_any_training(bad):
    with pytest.raises(RecArenaError, match="fm_start=True needs .*" + next(iter(bad)).split("_")[0]):
        XDeepFM(**{"pretrain_epochs": 50, "fm_start": True, **bad}).fit(binarize(_rating_data()[0], 4), seed=0,
                                                                          trainer=KIT_TRAINER)
