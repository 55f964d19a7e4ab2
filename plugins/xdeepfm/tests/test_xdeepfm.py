from recarena.testing import parametrize_with_checks
from recarena_xdeepfm import XDeepFM


@parametrize_with_checks([XDeepFM(dim=4, hidden=(8,), cin_layers=(6, 4), epochs=3, lr=0.01),
                          XDeepFM(dim=4, hidden=(), cin_layers=(5,), split_half=False, epochs=2, lr=0.01,
                                  pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)
