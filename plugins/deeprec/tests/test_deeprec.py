import numpy as np
import torch

from recarena.testing import KIT_TRAINER, _rating_data, parametrize_with_checks
from recarena_deeprec import DeepRec


@parametrize_with_checks([DeepRec(layers=(16, 8), epochs=5, batch_size=32, dropout=0.2),
                          DeepRec(layers=(8,), epochs=5, batch_size=32, item_based=True, refeed=0, last_activation=False)])
def test_conformance(model, check):
    check(model)


def test_learns_more_than_the_mean():
    train, _, test = _rating_data()
    m = DeepRec(layers=(32, 16), dropout=0.5, epochs=60, batch_size=16, lr=0.003).fit(train, None, seed=0, trainer=KIT_TRAINER)
    rmse = float(np.sqrt(np.mean((m.predict(test.user, test.item) - test.rating) ** 2)))
    mean_rmse = float(np.sqrt(np.mean((train.rating.mean() - test.rating) ** 2)))
    assert rmse < mean_rmse - 0.03, (rmse, mean_rmse)


def test_loss_is_masked_mse_plus_dense_refeeding():
    train, _, _ = _rating_data()
    m = DeepRec(layers=(8,), epochs=1, dropout=0.0, refeed=1).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net = m.network_.eval()
    rows = torch.arange(5)
    x, mask = net.rows.R[rows], net.rows.M[rows]
    with torch.no_grad():
        out = net(x)
        want = ((out - x) ** 2 * mask).sum() / mask.sum() + ((net(out) - out) ** 2).mean()
        torch.testing.assert_close(m.loss(net, {"row": rows}), want)
