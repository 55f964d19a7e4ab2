from recarena.testing import parametrize_with_checks
from recarena_ncf import NCF


@parametrize_with_checks([
    NCF(variant="gmf", dim_gmf=8, epochs=15, lr=0.01, batch_size=128),
    NCF(variant="neumf", dim_gmf=8, layers=(16, 8), epochs=20, pretrain_epochs=10, lr=0.01, batch_size=128),
])
def test_conformance(model, check):
    check(model)
