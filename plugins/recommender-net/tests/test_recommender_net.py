from recarena.testing import parametrize_with_checks
from recarena_recommender_net import RecommenderNet


@parametrize_with_checks([RecommenderNet(dim=8, hidden=(16,), epochs=4), RecommenderNet(dim=8, hidden=(16,), epochs=4, bias=True)])
def test_conformance(model, check):
    check(model)
