from recarena.testing import parametrize_with_checks
from recarena_dcnv2 import DCNV2


@parametrize_with_checks([DCNV2(dim=4, hidden=(8,), epochs=3, lr=0.01, cross_reg=0.01),
                          DCNV2(dim=4, hidden=(8,), rank=2, n_experts=3, structure="parallel", epochs=2, lr=0.01,
                                pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)
