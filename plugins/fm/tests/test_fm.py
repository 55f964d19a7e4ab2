import numpy as np
import pytest
import torch

from recarena.testing import parametrize_with_checks
from recarena_fm import FM, FMNet


@parametrize_with_checks([FM(dim=4, epochs=4, lr=0.01)])
def test_conformance(model, check):
    check(model)


def test_pairwise_term_equals_the_quadratic_sum():
    net = FMNet(10, 3)
    torch.nn.init.normal_(net.v.weight)
    torch.nn.init.normal_(net.w.weight)
    with torch.no_grad():
        net.v.weight[0].zero_()
        net.w.weight[0].zero_()
    feats = torch.tensor([[1, 4, 7, 0]])
    v, w = net.v.weight.detach(), net.w.weight.detach().squeeze(-1)
    ids = [1, 4, 7]
    want = sum(float(w[i]) for i in ids) + sum(float(v[a] @ v[b]) for k, a in enumerate(ids) for b in ids[k + 1 :])
    np.testing.assert_allclose(float(net(feats).detach()), want, rtol=1e-5)


def test_embedding_l2_counts_the_rows_a_batch_uses():
    from recarena.ctr import embedding_l2

    net = FMNet(6, 2)
    with torch.no_grad():
        net.v.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 3.0], [1.0, 1.0], [4.0, 0.0], [0.0, 0.0]]))
    feats = torch.tensor([[1, 2, 0], [1, 3, 3]])
    # row 1: |v1|^2 + |v2|^2 = 5 + 9 = 14; row 2: |v1|^2 + 2 |v3|^2 = 5 + 4 = 9; the mean 11.5, x reg
    assert float(embedding_l2(0.1, net, feats).detach()) == pytest.approx(1.15)
    assert embedding_l2(0.0, net, feats) == 0.0
