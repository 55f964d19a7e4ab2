import numpy as np
import pytest
import torch

from recarena.data.synthetic import walks
from recarena.testing import parametrize_with_checks
from recarena_gru4rec import GRU4Rec

TRAINER = {"progress_bar": False, "logger": "none"}


@parametrize_with_checks([GRU4Rec(dim=8, hidden=16, max_len=6, epochs=15, lr=0.01, batch_size=32, dropout=0.0),
                          GRU4Rec(dim=8, hidden=16, n_layers=2, max_len=4, epochs=20, lr=0.01, batch_size=32, dropout=0.0, loss_type="bce", n_neg=2)])
def test_conformance(model, check):
    check(model)



@pytest.mark.parametrize("loss_type", ["ce", "bce"])
def test_learns_a_deterministic_successor(loss_type):
    m = GRU4Rec(dim=16, hidden=32, max_len=5, epochs=60, lr=0.01, batch_size=16, dropout=0.0,
                loss_type=loss_type).fit(walks(), trainer=TRAINER)
    items, _ = m.recommend(np.arange(60), k=1)
    assert (items[:, 0] == (np.arange(60) + 8) % 12).mean() > 0.9


def test_leading_padding_leaves_the_state_at_zero():
    # the GRU has no biases, so padding (the zero row) keeps its state at zero: a sequence
    # reads the same whatever padding comes before it
    m = GRU4Rec(dim=8, hidden=8, max_len=6, epochs=1, batch_size=64).fit(walks(), trainer=TRAINER)
    net, pad = m.network_, m.n_items_
    with torch.no_grad():
        long = net(torch.tensor([[pad, pad, pad, 3, 4, 5]]))
        short = net(torch.tensor([[3, 4, 5]]))
    assert torch.allclose(long[0, 3:], short[0], atol=1e-6)
