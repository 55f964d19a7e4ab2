import numpy as np

from recarena.data.splits import ratio_by_user
from recarena.data.synthetic import synthetic
from recarena.eval.evaluator import RatingEvaluator
from recarena.testing import parametrize_with_checks
from recarena_biased_mf import BiasedMF


@parametrize_with_checks([BiasedMF(dim=8, epochs=8, batch_size=256, lr=0.02, reg=0.001),
                          BiasedMF(dim=8, epochs=20, batch_size=64, lr=3.0, reg=0.01, optimizer="sgd"),
                          BiasedMF(dim=8, epochs=8, batch_size=256, lr=0.02, reg=0.001, optimizer="sparse_adam")])
def test_conformance(model, check):
    check(model)


def test_learns_latent_factor_ratings_better_than_global_mean():
    data = synthetic(20_000, seed=3)
    s = ratio_by_user(data, (0.9, 0.1), seed=0)
    m = BiasedMF(dim=16, epochs=15, lr=0.01, reg=0.01).fit(s.train, seed=0, trainer={"progress_bar": False, "logger": "none"})
    rmse = RatingEvaluator(s.test).evaluate(m)["rmse"]
    baseline = float(np.sqrt(np.mean((s.test.rating - s.train.rating.mean()) ** 2)))
    assert rmse < 0.9 * baseline, (rmse, baseline)
