import itertools

import torch

from recarena.testing import parametrize_with_checks
from recarena_ffm import FFM, _Net, field_groups


@parametrize_with_checks([FFM(dim=4, epochs=3, lr=0.01), FFM(dim=2, epochs=2, lr=0.01, reg=0.01, use_side=False)])
def test_conformance(model, check):
    check(model)


def test_slots_of_a_multi_valued_column_are_one_field():
    assert field_groups(["user_id", "age", "item_id", "genre[0]", "genre[1]", "year"]) == [0, 1, 2, 3, 3, 4]


def test_the_logit_is_the_field_aware_sum_over_column_pairs():
    """y = w0 + sum_i w_{x_i} + sum_{i<j} <v_{x_i, field(j)}, v_{x_j, field(i)}>, computed pair by pair."""
    torch.manual_seed(0)
    groups = [0, 1, 2, 2]
    net = _Net(n_features=9, groups=groups, dim=3)
    with torch.no_grad():
        net.w0.fill_(0.3)
        net.w.weight.normal_()
        net.v.weight.normal_()
        net.w.weight[0].zero_()
        net.v.weight[0].zero_()
    feats = torch.tensor([[1, 3, 5, 6], [2, 4, 7, 0]])
    v = net.v.weight.detach().view(9, 3, 3)
    want = []
    for row in feats.tolist():
        y = 0.3 + sum(net.w.weight[x, 0].item() for x in row)
        for i, j in itertools.combinations(range(4), 2):
            y += float(v[row[i], groups[j]] @ v[row[j], groups[i]])
        want.append(y)
    torch.testing.assert_close(net(feats).detach(), torch.tensor(want), rtol=1e-5, atol=1e-5)
