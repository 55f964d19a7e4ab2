from recarena.testing import parametrize_with_checks
from recarena_nfm import NFM


@parametrize_with_checks([NFM(dim=4, hidden=(8,), epochs=3, lr=0.01),
                          NFM(dim=4, hidden=(), epochs=2, lr=0.01, batch_norm=False, pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)
