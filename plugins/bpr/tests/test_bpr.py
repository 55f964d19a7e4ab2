from recarena.testing import parametrize_with_checks
from recarena_bpr import BPR


@parametrize_with_checks([BPR(dim=16, epochs=12, batch_size=128, lr=0.05)])
def test_conformance(model, check):
    check(model)
