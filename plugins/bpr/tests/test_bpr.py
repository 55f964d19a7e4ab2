from recarena.testing import parametrize_with_checks
from recarena_bpr import BPR


# sparse_adam: lazy Adam over sparse embedding gradients (what keeps an epoch linear in
# interactions on large catalogues; just bench-scale), held to the same checks as the default
@parametrize_with_checks([BPR(dim=16, epochs=12, batch_size=128, lr=0.05),
                          BPR(dim=16, epochs=12, batch_size=128, lr=0.05, optimizer="sparse_adam")])
def test_conformance(model, check):
    check(model)
