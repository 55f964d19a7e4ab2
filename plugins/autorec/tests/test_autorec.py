from recarena.testing import parametrize_with_checks
from recarena_autorec import AutoRec


@parametrize_with_checks([AutoRec(hidden=16, epochs=5, lr=0.01), AutoRec(hidden=16, epochs=5, lr=0.01, item_based=False)])
def test_conformance(model, check):
    check(model)
