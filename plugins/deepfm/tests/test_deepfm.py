import torch

from recarena.ctr import FactorizationMachine
from recarena.data.filtering import binarize
from recarena.data.splits import global_random
from recarena.data.synthetic import synthetic
from recarena.testing import parametrize_with_checks
from recarena_deepfm import DeepFM, _Net

QUIET = {"logger": "none", "progress_bar": False}


@parametrize_with_checks([DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01), DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01, batch_norm=False),
                          DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01, pool_multi=True, input_dropout=0.2),
                          DeepFM(dim=4, hidden=(16,), epochs=2, lr=0.01, pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)


def test_pooled_slots_reach_the_deep_part_as_the_mean_of_their_filled_slots():
    """Fields 2-3 are slots of one multi-valued field (0 = empty slot): the deep input holds
    fields 0, 1 side by side, then the mean of the filled slots."""
    net = _Net(n_features=10, n_fields=4, dim=2, hidden=[], dropout=0.0, batch_norm=False, pooled=[2, 3])
    feats = torch.tensor([[1, 2, 5, 0], [1, 3, 5, 6]])
    v = net.v.weight.detach()
    want = torch.stack([torch.cat([v[1], v[2], v[5]]), torch.cat([v[1], v[3], (v[5] + v[6]) / 2])])
    torch.testing.assert_close(net.deep_input(feats).detach(), want)
    assert net.mlp[0].in_features == 6
    unpooled = _Net(n_features=10, n_fields=4, dim=2, hidden=[], dropout=0.0, batch_norm=False)
    assert unpooled.deep_input(feats).shape == (2, 8)


def test_pretraining_starts_the_fm_part_from_the_fm_stage():
    s = global_random(binarize(synthetic(3_000, seed=4), 4), [0.9, 0.1], seed=0)
    # lr 0: the second stage cannot move anything, so what it holds is what it started from
    model = DeepFM(dim=4, hidden=(8,), epochs=1, lr=0.0, pretrain_epochs=3, batch_size=512)
    model.fit(s.train, seed=2, trainer=QUIET)
    stage = FactorizationMachine(dim=4, lr=model.pretrain_lr, epochs=3, batch_size=512).fit(s.train, seed=2, trainer=QUIET)
    for name in ("w0", "w.weight", "v.weight"):
        torch.testing.assert_close(model.network_.get_parameter(name), stage.network_.get_parameter(name))
    assert stage.network_.v.weight.abs().max() > 0.05  # the stage did learn (init std is .01)
