import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

from recarena.data.interactions import IdMap, Interactions
from recarena.eval import RatingEvaluator
from recarena.testing import parametrize_with_checks
from recarena_variational_mf import VariationalMF, gaussian_kl


@parametrize_with_checks([VariationalMF(dim=4, epochs=8, batch_size=64, lr=0.02)])
def test_conformance(model, check):
    check(model)


def test_kl_is_torchs():
    torch.manual_seed(0)
    m, s, prior = torch.randn(5, 3), torch.rand(5, 3) + 0.1, torch.randn(3)
    want = kl_divergence(Normal(m, s), Normal(torch.zeros(3), (prior / 2).exp())).sum(1)
    torch.testing.assert_close(gaussian_kl(m, s, prior), want, rtol=1e-5, atol=1e-6)


def _world(seed=0, n_users=120, n_items=80, per_user=40):
    """Ratings from a rank-2 biased MF plus Gaussian noise whose std is 0.1 for even users and
    1.0 for odd ones; 25% of each user's ratings held out."""
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(0, 0.7, (n_users, 2)), rng.normal(0, 0.7, (n_items, 2))
    bu, bi = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items)
    noise = np.where(np.arange(n_users) % 2 == 0, 0.1, 1.0)
    rows = np.array([(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)])
    u, i = rows[:, 0], rows[:, 1]
    r = (3.0 + bu[u] + bi[i] + (P[u] * Q[i]).sum(1) + rng.normal(0, 1, len(u)) * noise[u]).astype(np.float32)
    held = rng.random(len(u)) < 0.25
    maps = IdMap(np.arange(n_users)), IdMap(np.arange(n_items))

    def part(mask, name):
        return Interactions(u[mask], i[mask], *maps, r[mask], None, name=name, rating_scale=(-10.0, 20.0))

    return part(~held, "world/train"), part(held, "world/test")


def test_predictive_variance_is_the_variance_of_sampled_predictions():
    train, test = _world()
    m = VariationalMF(dim=4, epochs=3, batch_size=128, lr=0.01).fit(train)
    net = m.network_
    u, i = torch.from_numpy(test.user[:50]), torch.from_numpy(test.item[:50])
    mu_u, s_u, mu_i, s_i = net.posterior(u, i)
    g = torch.Generator().manual_seed(0)
    n = 200_000 // 50
    zu = mu_u + s_u * torch.randn((n, *mu_u.shape), generator=g)
    zi = mu_i + s_i * torch.randn((n, *mu_i.shape), generator=g)
    draws = zu[..., 0] + zi[..., 0] + (zu[..., 1:] * zi[..., 1:]).sum(-1)
    want = draws.double().var(0) + net.noise_var(u, i).double()
    got = torch.from_numpy(m.predict_variance(test.user[:50], test.item[:50])).double()
    torch.testing.assert_close(got, want, rtol=0.05, atol=1e-4)


def test_knows_which_users_rate_noisily_and_its_intervals_cover():
    """The most confident 20% of predictions are the quiet users' (RMSE far below the overall),
    and the 90% interval covers about 90% of held-out ratings."""
    train, test = _world()
    m = VariationalMF(dim=4, epochs=60, batch_size=128, lr=0.01).fit(train)
    got = RatingEvaluator(test, ["rmse"]).evaluate(m)
    var = m.predict_variance(test.user, test.item)
    quiet = test.user % 2 == 0
    assert var[quiet].mean() < 0.25 * var[~quiet].mean()
    assert got["confident_ratio@20"] < 0.5, got
    assert 0.85 <= got["interval_coverage@90"] <= 0.95, got


def test_global_noise_is_one_sigma_for_everyone():
    train, test = _world()
    m = VariationalMF(dim=4, epochs=2, noise="global").fit(train)
    s2 = m.network_.noise_var(torch.from_numpy(test.user), torch.from_numpy(test.item))
    assert torch.allclose(s2, s2[0].expand_as(s2))
