import numpy as np
import pytest

from recarena.testing import KIT_TRAINER, _rating_data, parametrize_with_checks
from recarena_autorec import AutoRec


@parametrize_with_checks([AutoRec(hidden=16, epochs=5, lr=0.01), AutoRec(hidden=16, epochs=5, lr=0.01, item_based=False),
                          AutoRec(hidden=16, epochs=10, lr=0.01, optimizer="rprop", batch_size=10**6, input_dropout=0.2)])
def test_conformance(model, check):
    check(model)


@pytest.mark.parametrize("optimizer,lr,batch_size,epochs", [
    ("adam", 0.01, 16, 40),
    ("rprop", 0.01, 10**6, 80),  # full batch, as the paper trains it
    ("lbfgs", 1.0, 10**6, 4),
])
def test_every_optimizer_learns_more_than_the_mean(optimizer, lr, batch_size, epochs):
    train, _, test = _rating_data()
    m = AutoRec(hidden=32, optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs, reg=1.0)
    m.fit(train, None, seed=0, trainer=KIT_TRAINER)
    rmse = float(np.sqrt(np.mean((m.predict(test.user, test.item) - test.rating) ** 2)))
    mean_rmse = float(np.sqrt(np.mean((train.rating.mean() - test.rating) ** 2)))
    assert rmse < mean_rmse - 0.03, (optimizer, rmse, mean_rmse)


def test_unknown_optimizer_is_named():
    train, _, _ = _rating_data()
    with pytest.raises(ValueError, match="optimizer must be .*got 'adagrad'"):
        AutoRec(hidden=8, epochs=1, optimizer="adagrad").fit(train, None, seed=0, trainer=KIT_TRAINER)
