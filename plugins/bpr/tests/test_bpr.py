from recarena.testing import parametrize_with_checks
from recarena_bpr import BPR


@parametrize_with_checks([BPR(dim=16, epochs=30, batch_size=64, lr=0.02)])
def test_conformance(model, check):
    check(model)
