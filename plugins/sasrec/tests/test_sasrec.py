import numpy as np
import pytest
import torch

from recarena.data.synthetic import walks
from recarena.params import InvalidParameterError
from recarena.testing import parametrize_with_checks
from recarena_sasrec import SASRec

TRAINER = {"progress_bar": False, "logger": "none"}


@parametrize_with_checks([SASRec(dim=8, n_layers=1, heads=2, max_len=6, epochs=15, lr=0.01, batch_size=32, dropout=0.0),
                          SASRec(dim=8, n_layers=1, heads=1, max_len=4, epochs=20, lr=0.01, batch_size=32, dropout=0.1,
                                 loss_type="bce", n_neg=2),
                          SASRec(dim=8, n_layers=1, heads=2, max_len=6, epochs=15, lr=0.01, batch_size=32, dropout=0.0,
                                 train_windows="overlap")])
def test_conformance(model, check):
    check(model)



@pytest.mark.parametrize("loss_type", ["ce", "bce"])
def test_learns_a_deterministic_successor(loss_type):
    m = SASRec(dim=16, n_layers=1, heads=1, max_len=5, epochs=60, lr=0.01, batch_size=16, dropout=0.0,
               loss_type=loss_type).fit(walks(), trainer=TRAINER)
    items, _ = m.recommend(np.arange(60), k=1)  # among the 4 unseen items
    assert (items[:, 0] == (np.arange(60) + 8) % 12).mean() > 0.9


def test_attention_is_causal_and_ignores_padding():
    # the state at a position depends on the items up to it only, and not on how much
    # padding comes before the sequence
    m = SASRec(dim=8, n_layers=2, heads=2, max_len=6, epochs=1, batch_size=64, dropout=0.0).fit(walks(), trainer=TRAINER)
    net, pad = m.network_, m.n_items_
    seq = torch.tensor([[pad, pad, 3, 4, 5, 6]])
    changed_last = torch.tensor([[pad, pad, 3, 4, 5, 9]])
    with torch.no_grad():
        h, h2 = net(seq), net(changed_last)
        assert torch.allclose(h[0, :5], h2[0, :5], atol=1e-6) and not torch.allclose(h[0, 5], h2[0, 5])
        # the same items in a 4-wide window: the same states at the same (right-aligned) positions
        assert torch.allclose(net(seq[:, 2:])[0], h[0, 2:], atol=1e-5)


def test_context_is_the_history_given_at_scoring_time():
    # a user's scores from a history given now follow its last item, not the training one
    m = SASRec(dim=16, n_layers=1, heads=1, max_len=5, epochs=60, lr=0.01, batch_size=16, dropout=0.0).fit(walks(), trainer=TRAINER)
    hist = np.array([2, 3, 4])
    top = m.score_history(np.array([0]), np.array([0, 3] + [3] * 59), hist)[0]
    top[hist] = -np.inf
    assert int(top.argmax()) == 5


def test_heads_must_divide_dim():
    with pytest.raises(InvalidParameterError, match="heads"):
        SASRec(dim=10, heads=3).fit(walks(), trainer=TRAINER)
