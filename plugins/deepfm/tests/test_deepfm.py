from recarena.testing import parametrize_with_checks
from recarena_deepfm import DeepFM


@parametrize_with_checks([DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01), DeepFM(dim=4, hidden=(16,), epochs=3, lr=0.01, batch_norm=False)])
def test_conformance(model, check):
    check(model)
