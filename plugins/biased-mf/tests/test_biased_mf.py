import numpy as np
import pytest
import torch

from recarena import Task
from recarena.data.filtering import to_implicit
from recarena.data.splits import ratio_by_user
from recarena.data.synthetic import synthetic
from recarena.eval.evaluator import RatingEvaluator
from recarena.testing import parametrize_with_checks
from recarena_biased_mf import BiasedMF


@parametrize_with_checks([BiasedMF(dim=8, epochs=8, batch_size=256, lr=0.02, reg=0.001),
                          BiasedMF(dim=8, epochs=20, batch_size=64, lr=3.0, reg=0.01, optimizer="sgd"),
                          BiasedMF(dim=8, epochs=8, batch_size=256, lr=0.02, reg=0.001, optimizer="sparse_adam"),
                          # Gibbs sampling: the kit asks the instance, which fits ratings only
                          BiasedMF(dim=4, solver="mcmc", burn_in=5, samples=6, thin=2)])
def test_conformance(model, check):
    check(model)


def test_learns_latent_factor_ratings_better_than_global_mean():
    data = synthetic(20_000, seed=3)
    s = ratio_by_user(data, (0.9, 0.1), seed=0)
    m = BiasedMF(dim=16, epochs=15, lr=0.01, reg=0.01).fit(s.train, seed=0, trainer={"progress_bar": False, "logger": "none"})
    rmse = RatingEvaluator(s.test).evaluate(m)["rmse"]
    baseline = float(np.sqrt(np.mean((s.test.rating - s.train.rating.mean()) ** 2)))
    assert rmse < 0.9 * baseline, (rmse, baseline)


QUIET = {"progress_bar": False, "logger": "none"}


def test_mcmc_learns_ratings_as_well_as_tuned_gradient_training():
    data = synthetic(20_000, seed=3)
    s = ratio_by_user(data, (0.9, 0.1), seed=0)
    baseline = float(np.sqrt(np.mean((s.test.rating - s.train.rating.mean()) ** 2)))
    gd = BiasedMF(dim=16, epochs=15, lr=0.01, reg=0.01).fit(s.train, seed=0, trainer=QUIET)
    mc = BiasedMF(dim=8, solver="mcmc", burn_in=20, samples=40).fit(s.train, seed=0, trainer=QUIET)
    rmse_gd = RatingEvaluator(s.test).evaluate(gd)["rmse"]
    rmse_mc = RatingEvaluator(s.test).evaluate(mc)["rmse"]
    # no regularization weight to tune, and still no worse than the hand-tuned gradient run
    assert rmse_mc < 0.9 * baseline and rmse_mc <= rmse_gd + 0.01, (rmse_mc, rmse_gd, baseline)
    # the network holds every kept sample side by side; embeddings() gives their mean
    assert mc.network_.user_emb.weight.shape == (data.n_users, 8 * 40)
    emb = mc.embeddings()
    assert emb["user"].shape == (data.n_users, 8) and emb["item"].shape == (data.n_items, 8)
    assert len(mc.history_) == 60 and all(h["noise_sd"] > 0 for h in mc.history_)


def test_mcmc_network_is_the_posterior_mean_of_its_samples():
    """The sampler tracks the running mean of each sample's own predictions on the training
    rows; the fitted network (samples side by side, biases averaged) must give the same."""
    data = synthetic(1500, n_users=50, n_items=40, seed=1)
    m = BiasedMF(dim=3, solver="mcmc", burn_in=3, samples=5, thin=2).fit(data, seed=0, trainer=QUIET)
    pred = m.network_(torch.from_numpy(data.user), torch.from_numpy(data.item)).detach().numpy()
    rmse = float(np.sqrt(np.mean((pred - data.rating) ** 2)))
    assert abs(rmse - m.history_[-1]["train_rmse_mean"]) < 1e-5, (rmse, m.history_[-1])
    assert len(m.history_) == 3 + 4 * 2 + 1  # burn-in, then a kept sample every 2nd sweep


def test_mcmc_refuses_implicit_data_and_bad_settings():
    data = synthetic(800, n_users=40, n_items=30, seed=0)
    with pytest.raises(ValueError, match="fits explicit ratings"):
        BiasedMF(solver="mcmc", burn_in=1, samples=1).fit(to_implicit(data), seed=0, trainer=QUIET)
    with pytest.raises(ValueError, match="parameter 'solver' of BiasedMF: 'gibs'. Allowed: one of 'gradient', 'mcmc'"):
        BiasedMF(solver="gibs").fit(data, seed=0, trainer=QUIET)
    with pytest.raises(ValueError, match=r"parameter 'samples' of BiasedMF: 0. Allowed: an integer in \[1, inf\]"):
        BiasedMF(solver="mcmc", samples=0).fit(data, seed=0, trainer=QUIET)


def test_capabilities_narrow_with_the_solver():
    assert BiasedMF.capabilities.supports(Task.RANKING)  # what `recarena plugins` lists
    assert BiasedMF().capabilities.supports(Task.RANKING)
    mc = BiasedMF(solver="mcmc").capabilities
    assert mc.supports(Task.RATING) and not mc.supports(Task.RANKING) and mc.onnx and mc.embeddings
