import numpy as np
import torch

from recarena.testing import KIT_TRAINER, _implicit_data, parametrize_with_checks
from recarena_cdae import CDAE


@parametrize_with_checks([CDAE(dim=16, epochs=15, batch_size=64, lr=0.02, reg=0.001),
                          CDAE(dim=8, epochs=15, batch_size=64, lr=0.02, activation="sigmoid", loss_type="mse")])
def test_conformance(model, check):
    check(model)


def test_user_node_personalises_and_a_fold_in_user_has_none():
    """Two users with the same items score differently through their nodes; a user without
    training items is encoded from the row alone (node 0), however their node row was set."""
    train, _, _ = _implicit_data()
    m = CDAE(dim=8, epochs=5, reg=0.0).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net = m.network_
    row = torch.from_numpy(train.csr()[[0]].toarray()).repeat(2, 1)
    with torch.no_grad():
        a, b = m.forward_rows(net, row, torch.tensor([0, 1]))
        assert not torch.allclose(a, b)
        net.trained[1] = False
        net.user_node.weight[1] = 100.0
        bare = net.decoder(torch.relu(net.encoder(row[:1])))
        torch.testing.assert_close(m.forward_rows(net, row[:1], torch.tensor([1])), bare)


def test_loss_by_hand():
    train, _, _ = _implicit_data()
    m = CDAE(dim=4, epochs=1, reg=0.3).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net = m.network_.eval()
    rows, users = torch.from_numpy(train.csr()[:6].toarray()), torch.arange(6)
    with torch.no_grad():
        p = torch.sigmoid(net.decoder(torch.relu(net.encoder(rows) + net.user_node(users))))
        bce = -(rows * p.log() + (1 - rows) * (1 - p).log()).sum(1).mean()
        l2 = net.encoder.weight.pow(2).sum() + net.decoder.weight.pow(2).sum() + net.user_node(users).pow(2).sum(1).mean()
        want = bce + 0.15 * l2
        got = m.loss(net, {"row": rows, "user": users})
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
