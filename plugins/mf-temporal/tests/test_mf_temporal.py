import numpy as np
import torch

from recarena.data.interactions import IdMap, Interactions
from recarena.eval import RatingEvaluator
from recarena.testing import parametrize_with_checks
from recarena_biased_mf import BiasedMF
from recarena_mf_temporal import Clock, MFTemporal

DAY = 86400


@parametrize_with_checks([MFTemporal(dim=8, epochs=6, batch_size=64, lr=0.02, drift_factors=True),
                          MFTemporal(dim=8, epochs=4, batch_size=64, lr=0.02, static_epochs=3)])
def test_conformance(model, check):
    check(model)


def test_clock_by_hand():
    """User 0 rated on days 0, 2 and 4 (mean 2), user 1 on day 10; 2 bins of 6 days."""
    user = np.array([0, 0, 0, 1])
    ts = np.array([0, 2, 4, 10]) * DAY + 3600
    c = Clock(user, ts, 2, n_bins=2, beta=0.5, day_s=DAY, drift_s=DAY)
    dev, slot, bins = c.features(np.array([0, 0, 1, 1]), np.array([4, 1, 10, 30]) * DAY)
    # day 30 is past user 1's only training day: the drift holds its last value (0)
    np.testing.assert_allclose(dev, [np.sqrt(2), -1.0, 0.0, 0.0], rtol=1e-6)
    assert (slot[[0, 2]] > 0).all() and (slot[[1, 3]] == 0).all()  # day 1 and day 30: no offset
    assert bins.tolist() == [0, 0, 1, 1]  # day 30 is past the period: the last bin
    dev0, slot0, _ = c.features(np.array([0, 1]), None)  # time-free: each user's last day
    np.testing.assert_allclose(dev0, [np.sqrt(2), 0.0], rtol=1e-6)
    assert (slot0 > 0).all()


def _drifting(n_users=60, n_items=30, days=200, seed=0):
    """Every user's ratings rise by 1.5 stars over the period (a drift in time, not in who or
    what); the last 20% of each user's ratings by time are held out."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = np.sort(rng.integers(0, days, 25))
        items = rng.choice(n_items, 25, replace=False)
        for ti, i in zip(t, items):
            rows.append((u, i, ti, 2.5 + 1.5 * ti / days + 0.3 * ((u + i) % 3 - 1)))
    a = np.array(rows)
    maps = IdMap(np.arange(n_users)), IdMap(np.arange(n_items))
    data = Interactions(a[:, 0], a[:, 1], *maps, a[:, 3].astype(np.float32), (a[:, 2] * DAY).astype(np.int64),
                        name="drift", rating_scale=(1.0, 5.0))
    from recarena.data.splits import ratio_by_user

    s = ratio_by_user(data, (0.8, 0.2), order="time")
    return s.train, s.test


def test_without_time_terms_it_is_biased_mf():
    train, test = _drifting()
    kw = dict(dim=4, epochs=4, batch_size=32, lr=0.01, reg=0.05, bias_reg=0.01)
    ours = MFTemporal(temporal=False, **kw).fit(train)
    theirs = BiasedMF(**kw).fit(train)
    np.testing.assert_allclose(ours.predict(test.user, test.item, timestamps=test.timestamp),
                               theirs.predict(test.user, test.item), rtol=1e-5, atol=1e-5)


def test_the_static_stage_is_biased_mf_and_the_temporal_fit_starts_from_it():
    """static_epochs: the stage is biased-mf on the same seed, and the temporal model's factors
    and biases start where it ended (zero epochs of the main fit leave them there)."""
    train, test = _drifting()
    kw = dict(dim=4, batch_size=32, lr=0.01, reg=0.05, bias_reg=0.01)
    staged = MFTemporal(static_epochs=3, epochs=1, **kw)
    seen = {}
    orig = MFTemporal.init_from_stages

    def spy(self, net, fitted):
        seen.update({k: v.detach().clone() for k, v in fitted["static"].base.state_dict().items()})
        orig(self, net, fitted)
        seen["after"] = {k: v.detach().clone() for k, v in net.base.state_dict().items()}

    MFTemporal.init_from_stages = spy
    try:
        staged.fit(train)
    finally:
        MFTemporal.init_from_stages = orig
    alone = BiasedMF(epochs=3, **kw).fit(train)
    np.testing.assert_allclose(seen["user_emb.weight"].numpy(), alone.network_.user_emb.weight.detach().numpy(), atol=1e-6)
    for k, v in seen["after"].items():
        assert torch.equal(v, seen[k]), k


def test_a_drift_in_time_is_learned_and_used_at_the_targets_times():
    train, test = _drifting()
    kw = dict(dim=4, epochs=30, batch_size=64, lr=0.02, reg=0.01)
    timed = MFTemporal(drift_factors=True, **kw).fit(train)
    plain = BiasedMF(**kw).fit(train)
    ours = RatingEvaluator(test, ["rmse"]).evaluate(timed)["rmse"]
    theirs = RatingEvaluator(test, ["rmse"]).evaluate(plain)["rmse"]
    assert ours < 0.8 * theirs, (ours, theirs)


def test_the_drift_runs_on_its_own_clock():
    """In hours, user 0's ratings (days 0, 2, 4 at 01:00) have mean hour 49; a rating on day 4
    at 01:00 is 48 hours past it, one at day 4 + 10 h is held to the last training hour."""
    user = np.array([0, 0, 0])
    ts = np.array([0, 2, 4]) * DAY + 3600
    c = Clock(user, ts, 1, n_bins=1, beta=0.5, day_s=DAY, drift_s=3600)
    dev, slot, _ = c.features(np.array([0, 0]), np.array([4 * DAY + 3600, 4 * DAY + 36000]))
    np.testing.assert_allclose(dev, [np.sqrt(48), np.sqrt(48)], rtol=1e-6)
    assert (slot > 0).all()  # the same day: its offset applies


def test_a_day_without_training_rows_gets_the_users_mean_day_offset():
    """User 0 rated on days 0, 2 and 4, user 1 on day 10: a rating on day 1 (no offset of its
    own) is the time-free model plus user 0's mean day offset, the same on any unseen day."""
    user = np.array([0, 0, 0, 1])
    ts = np.array([0, 2, 4, 10]) * DAY + 3600
    c = Clock(user, ts, 2, n_bins=1, beta=0.5, day_s=DAY, drift_s=DAY)
    np.testing.assert_allclose(c.mean_day_offset(np.array([0.0, 0.3, 0.6, -0.3, 2.0], np.float32)), [0.2, 2.0], rtol=1e-6)
    maps = IdMap(np.arange(2)), IdMap(np.arange(3))
    data = Interactions(user, np.array([0, 1, 2, 0]), *maps, np.array([4.0, 5.0, 4.0, 2.0], np.float32), ts,
                        rating_scale=(1.0, 5.0))
    m = MFTemporal(dim=2, epochs=30, lr=0.05, time_reg=0.0, bias_reg=0.1).fit(data, trainer={"progress_bar": False,
                                                                                             "logger": "none"})
    net, clock = m.network_, m.clock_
    mean = clock.mean_day_offset(net.day_bias.weight.detach().numpy()[:, 0])
    assert abs(mean[0]) > 1e-3  # the offsets learned something for user 0
    unseen = m.predict(np.array([0, 0]), np.array([1, 1]), timestamps=np.array([1, 7]) * DAY)
    dev, _, bins = clock.features(np.array([0]), np.array([DAY]))
    with torch.no_grad():
        no_offset = float(net(torch.tensor([0]), torch.tensor([1]), torch.from_numpy(dev), torch.tensor([0]),
                              torch.from_numpy(bins))[0])
    np.testing.assert_allclose(unseen[0], np.clip(no_offset + mean[0], 1, 5), rtol=1e-5)
