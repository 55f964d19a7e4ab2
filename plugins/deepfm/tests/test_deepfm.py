import torch

from recarena.testing import parametrize_with_checks
from recarena_deepfm import DeepFM, _Net


@parametrize_with_checks([DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01), DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01, batch_norm=False),
                          DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01, pool_multi=True, input_dropout=0.2)])
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
