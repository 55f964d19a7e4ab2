import numpy as np
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
