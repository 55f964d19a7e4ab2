"""The CTR family (fm, deepfm and the second wave) on both of its tasks: 0/1 labels give
probabilities and export with parity; ratings give ratings around the mean; shared FM
pre-training hands over what each network has."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from recarena import plugins
from recarena.base import Capabilities, Task
from recarena.ctr import FactorizationMachine
from recarena.data.filtering import binarize
from recarena.errors import RecArenaError
from recarena.onnx_export import parity
from recarena.testing import KIT_TRAINER, _rating_data

SMALL = {
    "fm": {"dim": 4}, "deepfm": {"dim": 4, "hidden": (8,)}, "ffm": {"dim": 4},
    "nfm": {"dim": 4, "hidden": (8,)}, "wide-deep": {"dim": 4, "hidden": (8,), "crosses": ["group*genres"]},
    "xdeepfm": {"dim": 4, "hidden": (8,), "cin_layers": (4, 4)},
    "dcnv2": {"dim": 4, "hidden": (8,), "rank": 2, "n_experts": 2},
}


def make(name, **extra):
    return plugins.get(name)(**{"epochs": 2, "lr": 0.01, **SMALL[name], **extra})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_click_labels_export_the_probability_graph_with_parity(name):
    train = binarize(_rating_data()[0], 4)
    model = make(name).fit(train, seed=0, trainer=KIT_TRAINER)
    assert model.network_.binary and float(model.network_.offset) == 0.0
    with tempfile.TemporaryDirectory() as d:
        manifest = model.export_onnx(Path(d), k=10)
        worst = parity(model, Path(d), manifest["graphs"])
    assert worst and all(v <= 1e-4 for v in worst.values()), worst


@pytest.mark.parametrize("name", sorted(SMALL))
def test_ratings_are_predicted_around_the_training_mean(name):
    train = _rating_data()[0]
    model = make(name, epochs=1, lr=1e-6).fit(train, seed=0, trainer=KIT_TRAINER)
    assert not model.network_.binary
    # lr ~ 0: the network adds almost nothing to the offset, the mean training rating
    mean = float(np.mean(train.rating))
    assert float(model.network_.offset) == pytest.approx(mean, rel=1e-6)
    users, items = torch.as_tensor(train.user[:50]), torch.as_tensor(train.item[:50])
    pred = model.predict(train.user[:50], train.item[:50])
    net = model.network_
    with torch.no_grad():
        logits = model.logits(net, model._feats(net, users, items)).numpy()
    np.testing.assert_allclose(pred, logits + mean, rtol=1e-6, atol=1e-6)
    if name in ("fm", "ffm"):  # no tower whose random output unit shifts the start
        np.testing.assert_allclose(pred, mean, atol=0.05)


def test_a_click_only_model_refuses_ratings_before_training():
    class ClickOnly(FactorizationMachine):
        capabilities = Capabilities(tasks={Task.CTR})

    with pytest.raises(RecArenaError, match="labels must be 0 or 1"):
        ClickOnly(dim=2, epochs=1).fit(_rating_data()[0], seed=0, trainer=KIT_TRAINER)


@pytest.mark.parametrize("name", ["nfm", "wide-deep", "xdeepfm", "dcnv2"])
def test_fm_pretraining_hands_over_the_parameters_the_network_has(name):
    train = binarize(_rating_data()[0], 4)
    # lr 0 after the stage: what the model holds is what the stage gave it
    model = make(name, lr=0.0, pretrain_epochs=2, pretrain_lr=0.02).fit(train, seed=1, trainer=KIT_TRAINER)
    stage = FactorizationMachine(dim=4, lr=0.02, epochs=2, batch_size=model.batch_size).fit(train, seed=1, trainer=KIT_TRAINER)
    own = dict(model.network_.named_parameters())
    handed = [n for n in ("w0", "w.weight", "v.weight") if n in own]
    assert "v.weight" in handed
    for n in handed:
        torch.testing.assert_close(own[n], stage.network_.get_parameter(n))
    assert stage.network_.v.weight.abs().max() > 0.02  # the stage learned (init std .01)


def test_predict_in_chunks_equals_predict_at_once():
    """xdeepfm predicts predict_batch_size pairs at a time (its CIN is wide per row): the chunks
    give what one call gives."""
    train = binarize(_rating_data()[0], 4)
    model = make("xdeepfm").fit(train, seed=0, trainer=KIT_TRAINER)
    assert type(model).predict_batch_size < 65536
    whole = model.predict(train.user, train.item, batch_size=len(train))
    np.testing.assert_allclose(model.predict(train.user, train.item, batch_size=7), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict(train.user, train.item), whole, rtol=1e-6, atol=1e-7)
