"""The user-row autoencoders under strong generalization: users held out of training are
scored from fold-in items given at scoring time (through the evaluator's fold-in path, as the
ml1m-strong protocol runs them), those items are masked, and what is found is the held-out
part. On checkerboard data (even users like even items, odd users odd ones) a held-out user's
fold-in items are all that says which class they are in: a model that ignored them would find
their items no better than chance (pop: 50%)."""

from __future__ import annotations

import numpy as np
import pytest

from recarena import plugins
from recarena.data.filtering import to_implicit
from recarena.data.splits import user_holdout
from recarena.data.synthetic import checkerboard
from recarena.eval.evaluator import RankingEvaluator
from recarena.testing import KIT_TRAINER

SMALL = {
    "cdae": {"dim": 16, "epochs": 30, "lr": 0.02, "batch_size": 32},
    "mult-vae": {"hidden": (32,), "latent": 8, "epochs": 30, "lr": 0.02, "batch_size": 32},
    "mult-dae": {"latent": 8, "epochs": 30, "lr": 0.02, "batch_size": 32},
    "recvae": {"hidden": 16, "latent": 8, "epochs": 30, "lr": 0.03, "batch_size": 32, "enc_epochs": 1, "dec_epochs": 1},
    "pop": {},
}


@pytest.fixture(scope="module")
def split():
    train, _ = checkerboard(n_users=120, n_items=60, per_user=12, seed=1)
    return user_holdout(to_implicit(train), n_valid_users=10, n_test_users=30, fold_in=0.5, seed=0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_held_out_users_are_scored_from_their_fold_in_items(name, split):
    fold, test = split.extra["test_fold_in"], split.test
    assert not set(test.user.tolist()) & set(split.train.user.tolist())
    m = plugins.get(name)(**SMALL[name]).fit(split.train, None, seed=0, trainer=KIT_TRAINER)
    # the protocol's path: the evaluator scores held-out users from their fold-in items
    got = RankingEvaluator(test, [fold], ["recall@10"], fold_in=True).evaluate(m)
    users = np.unique(test.user)
    order = np.argsort(fold.user, kind="stable")
    indptr = np.searchsorted(fold.user[order], np.arange(m.n_users_ + 1))
    scores = m.score_history(users, indptr, fold.item[order]).numpy()
    scores[np.repeat(np.arange(len(users)), np.diff(indptr)[users]), fold.item[order][np.isin(fold.user[order], users)]] = -np.inf
    top = np.argsort(-scores, 1, kind="stable")[:, :5]
    own = (top % 2 == users[:, None] % 2).mean()
    if name == "pop":
        assert own < 0.7, own  # one list for both classes
    else:
        assert own >= 0.95 and got["recall@10"] > 0.3, (own, got)
