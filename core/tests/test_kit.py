"""The conformance kit catches each convention a new plugin author can miss, with a message
that names the fix: deliberately broken plugins, one per convention."""

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from recarena import Capabilities, Recommender, Task, plugins, testing
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


class CoOccurrence(Recommender):
    """A correct closed-form ranker; the broken variants below change one thing each."""

    capabilities = Capabilities(tasks={Task.RANKING})
    _parameter_constraints = {"shrink": [Interval(float, 0, None)]}

    def __init__(self, shrink: float = 1.0):
        self.shrink = shrink

    def _fit(self, train, valid, monitor):
        X = train.csr()
        X.data[:] = 1.0
        self.sim_ = torch.from_numpy((X.T @ X).toarray().astype(np.float32) / (1.0 + self.shrink))
        self.X_ = X.astype(np.float32)

    def _score(self, users):
        return torch.from_numpy(self.X_[users.numpy()].toarray()) @ self.sim_


class ScoresUsers(CoOccurrence):
    def _score(self, users):
        return torch.zeros(len(users), self.n_users_)  # [B, n_users], not [B, n_items]


class NumpyScores(CoOccurrence):
    def _score(self, users):
        return super()._score(users).numpy()


class ForgetsUnderscore(CoOccurrence):
    def _fit(self, train, valid, monitor):
        super()._fit(train, valid, monitor)
        self.item_norms = np.ones(train.n_items)  # learned, but not named item_norms_


class _Dot(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RANKING})
    negatives = True
    _parameter_constraints = {"dim": [Interval(int, 1, None)]}

    def __init__(self, dim=8, epochs=2, batch_size=256, lr=0.01, optimizer="adam", weight_decay=0.0, n_neg=1,
                 neg_sampling="uniform"):
        self.dim, self.epochs, self.batch_size, self.lr = dim, epochs, batch_size, lr
        self.optimizer, self.weight_decay, self.n_neg, self.neg_sampling = optimizer, weight_decay, n_neg, neg_sampling

    def build_network(self, train):
        net = nn.Module()
        net.user_emb, net.item_emb = nn.Embedding(train.n_users, self.dim), nn.Embedding(train.n_items, self.dim)
        return net

    def loss(self, net, batch):
        u = net.user_emb(batch["user"])
        return -torch.nn.functional.logsigmoid((u * net.item_emb(batch["item"])).sum(-1)
                                               - (u * net.item_emb(batch["neg"][:, 0])).sum(-1)).mean()

    def predict_pairs(self, net, users, items):
        return (net.user_emb(users) * net.item_emb(items)).sum(-1)


class NoScoreUsers(_Dot):
    """Declares ranking but only implements predict_pairs."""


class MisspelledNegatives(_Dot):
    """Takes num_neg where the base reads n_neg."""

    def __init__(self, dim=8, epochs=2, batch_size=256, lr=0.01, optimizer="adam", weight_decay=0.0, num_neg=4,
                 neg_sampling="uniform"):
        self.dim, self.epochs, self.batch_size, self.lr = dim, epochs, batch_size, lr
        self.optimizer, self.weight_decay, self.num_neg, self.neg_sampling = optimizer, weight_decay, num_neg, neg_sampling


class MisspelledConstraint(CoOccurrence):
    _parameter_constraints = {"shrnk": [Interval(float, 0, None)]}


def _fails(check, model, *needles):
    with pytest.raises(AssertionError) as e:
        check(model)
    for n in needles:
        assert n in str(e.value), f"{n!r} not in {e.value}"


def test_the_correct_plugin_passes_the_checks_that_do_not_need_an_install():
    for check in testing.checks_for(CoOccurrence()):
        if check is not testing.check_entry_point:
            check(CoOccurrence())


def test_score_of_shape_b_by_n_users_is_named():
    _fails(testing.check_output_contract, ScoresUsers(), "ScoresUsers._score must return shape [B, n_items]")


def test_numpy_score_is_named():
    _fails(testing.check_output_contract, NumpyScores(), "NumpyScores._score must return a torch.Tensor", "ndarray")


def test_ranking_without_score_users_is_named():
    _fails(testing.check_ranker_implements_score, NoScoreUsers(), "does not implement score_users(network, users")


def test_learned_attribute_without_underscore_is_named():
    _fails(testing.check_learned_attributes_suffixed, ForgetsUnderscore(), "['item_norms']", "rename to item_norms_")


def test_misspelled_parameter_is_named():
    _fails(testing.check_parameters_declared, MisspelledNegatives(), "no parameter 'n_neg'",
           "'num_neg' looks like a misspelling of it")
    _fails(testing.check_parameters_declared, MisspelledConstraint(), "declares 'shrnk'", "a typo of 'shrink'")


def test_invalid_parameter_values_are_refused_before_fitting():
    testing.check_invalid_params_refused(_Dot())
    m = _Dot(n_neg=0)
    with pytest.raises(ValueError, match="parameter 'n_neg' of _Dot: 0. Allowed: an integer in"):
        m.fit(testing._implicit_data()[0])
    assert not m.is_fitted


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install a distribution 'kitplug' (module kitplug, class Plug) into a folder on
    sys.path, with or without its entry point."""

    def install(entry_point: bool):
        pkg = tmp_path / "kitplug"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent("""\
            from recarena import Capabilities, Recommender, Task

            class Plug(Recommender):
                capabilities = Capabilities(tasks={Task.RANKING})

                def __init__(self):
                    pass
        """))
        info = tmp_path / "kitplug-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kitplug\nVersion: 0.1\n")
        (info / "top_level.txt").write_text("kitplug\n")
        if entry_point:
            (info / "entry_points.txt").write_text("[recarena.models]\nkitplug = kitplug:Plug\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        plugins.discover.cache_clear()
        import importlib

        return importlib.import_module("kitplug").Plug

    yield install
    sys.modules.pop("kitplug", None)
    plugins.discover.cache_clear()


def test_installed_distribution_without_entry_point_is_named(installed):
    cls = installed(entry_point=False)
    _fails(testing.check_entry_point, cls(), "its distribution kitplug is installed but declares no entry point",
           'Add `NAME = "kitplug:Plug"` under [project.entry-points."recarena.models"]')


def test_installed_distribution_with_its_entry_point_passes(installed):
    cls = installed(entry_point=True)
    testing.check_entry_point(cls())
    assert plugins.get("kitplug") is cls


def test_a_module_outside_any_distribution_is_named():
    _fails(testing.check_entry_point, CoOccurrence(), "no installed distribution provides the module")


def test_fitting_a_torch_plugin_without_the_training_fields_names_them():
    from recarena.errors import RecArenaError

    class Bare(_Dot):
        negatives = False

        def __init__(self, dim=8, epochs=2, batch_size=256, lr=0.01):
            self.dim, self.epochs, self.batch_size, self.lr = dim, epochs, batch_size, lr

    with pytest.raises(RecArenaError, match=r"lacks \['optimizer', 'weight_decay'\]: every torch plugin takes epochs"):
        Bare().fit(testing._implicit_data()[0])
