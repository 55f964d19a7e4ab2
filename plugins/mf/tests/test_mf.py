from recarena.testing import parametrize_with_checks
from recarena_mf import MF


@parametrize_with_checks([MF(dim=8, epochs=5, lr=0.01)])
def test_conformance(model, check):
    check(model)
