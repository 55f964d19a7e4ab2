from recarena.testing import parametrize_with_checks
from recarena_fm import FM


@parametrize_with_checks([FM(dim=4, epochs=4, lr=0.01)])
def test_conformance(model, check):
    check(model)
