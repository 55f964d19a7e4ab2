from recarena.testing import parametrize_with_checks
from recarena_wide_deep import WideDeep


@parametrize_with_checks([WideDeep(dim=4, hidden=(8,), epochs=3, lr=0.01),
                          WideDeep(dim=4, hidden=(8,), epochs=2, lr=0.01, crosses=["group*genres", "user_id*genres"],
                                   pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)
