import numpy as np
import pandas as pd

from recarena.data.interactions import IdMap, Interactions
from recarena.testing import parametrize_with_checks
from recarena_biased_mf import BiasedMF
from recarena_mf_side import MFSide, attribute_ids


@parametrize_with_checks([MFSide(dim=8, epochs=10, batch_size=64, lr=0.02)])
def test_conformance(model, check):
    check(model)


def _genre_world(n_users=40, n_items=40, seed=0):
    """Items of genre 'Good' are rated 5 by everyone, of genre 'Bad' 1; users are of two
    occupations. Items 30-39 have no ratings in train (cold): their test rows are the
    ratings everyone would give them."""
    rng = np.random.default_rng(seed)
    genre = np.where(np.arange(n_items) % 2 == 0, "Good", "Bad")
    rows = [(u, i) for u in range(n_users) for i in rng.choice(30, 12, replace=False)]
    cold = [(u, i) for u in range(n_users) for i in range(30, n_items)]
    users, items = IdMap(np.arange(n_users)), IdMap(np.arange(n_items))
    ufeat = pd.DataFrame({"occupation": np.arange(n_users) % 2})
    ifeat = pd.DataFrame({"genres": [f"{g}|Drama" for g in genre]})

    def part(pairs, name):
        a = np.array(pairs, np.int64)
        r = np.where(genre[a[:, 1]] == "Good", 5.0, 1.0).astype(np.float32)
        return Interactions(a[:, 0], a[:, 1], users, items, r, None, user_features=ufeat, item_features=ifeat,
                            name=name, rating_scale=(1.0, 5.0))

    return part(rows, "genres/train"), part(cold, "genres/test")


def test_attribute_ids_number_the_values_in_use_and_keep_padding_zero():
    train, _ = _genre_world()
    users, items, n = attribute_ids(train)
    assert users.shape == (40, 1) and items.shape == (40, 2)
    # two occupations + two genre slots' values {Good, Bad, Drama}: ids 1..5, none 0
    assert n == 6 and set(np.unique(np.concatenate([users.ravel(), items.ravel()]))) == {1, 2, 3, 4, 5}
    assert len(set(items[:, 1])) == 1  # Drama in every item's second slot


def test_without_side_features_it_is_biased_mf():
    train, test = _genre_world()
    kw = dict(dim=4, epochs=4, batch_size=32, lr=0.01, reg=0.05, bias_reg=0.01)
    ours = MFSide(use_side=False, **kw).fit(train)
    theirs = BiasedMF(**kw).fit(train)
    np.testing.assert_allclose(ours.predict(test.user, test.item), theirs.predict(test.user, test.item), rtol=1e-5, atol=1e-5)


def test_a_cold_item_is_scored_from_its_genres():
    """biased-mf answers mu + b_u for an item it never saw (here about 3 for everyone);
    mf-side knows a cold 'Good' item from its genre."""
    train, test = _genre_world()
    kw = dict(dim=4, epochs=150, batch_size=32, lr=0.02, reg=0.01)
    side = MFSide(**kw).fit(train)
    plain = BiasedMF(**kw).fit(train)
    truth = test.rating
    side_rmse = np.sqrt(np.mean((np.asarray(side.predict(test.user, test.item)) - truth) ** 2))
    plain_pred = np.asarray(plain.predict(test.user, test.item))
    plain_rmse = np.sqrt(np.mean((plain_pred - truth) ** 2))
    assert side_rmse < 0.4 < 1.5 < plain_rmse
    # biased-mf's defined answer for an unseen item: mu + b_u, the same for every cold item
    net = plain.network_
    want = (net.mu + net.user_bias.weight[test.user, 0]).detach().numpy()
    np.testing.assert_allclose(plain_pred, np.clip(want, 1, 5), rtol=1e-6)


def test_unseen_rows_of_biased_mf_stay_zero_through_training():
    train, _ = _genre_world()
    net = BiasedMF(dim=4, epochs=3, batch_size=32).fit(train).network_.requires_grad_(False)
    assert float(net.item_emb.weight[30:].abs().sum()) == 0.0 and float(net.item_bias.weight[30:].abs().sum()) == 0.0
    assert float(net.item_emb.weight[:30].abs().sum()) > 0.0


