import numpy as np
import pytest

from recarena.testing import KIT_TRAINER, _rating_data, parametrize_with_checks
from recarena_autorec import AutoRec


@parametrize_with_checks([AutoRec(hidden=16, epochs=5, lr=0.01), AutoRec(hidden=16, epochs=5, lr=0.01, item_based=False),
                          AutoRec(hidden=16, epochs=10, lr=0.01, optimizer="rprop", batch_size=10**6, input_dropout=0.2, encoder_reg=0.5)])
def test_conformance(model, check):
    check(model)


@pytest.mark.parametrize("optimizer,lr,batch_size,epochs", [
    ("adam", 0.01, 16, 40),
    ("rprop", 0.01, 10**6, 80),  # full batch, as the paper trains it
    ("lbfgs", 1.0, 10**6, 4),
])
def test_every_optimizer_learns_more_than_the_mean(optimizer, lr, batch_size, epochs):
    train, _, test = _rating_data()
    m = AutoRec(hidden=32, optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs, reg=1.0)
    m.fit(train, None, seed=0, trainer=KIT_TRAINER)
    rmse = float(np.sqrt(np.mean((m.predict(test.user, test.item) - test.rating) ** 2)))
    mean_rmse = float(np.sqrt(np.mean((train.rating.mean() - test.rating) ** 2)))
    assert rmse < mean_rmse - 0.03, (optimizer, rmse, mean_rmse)


def test_unknown_optimizer_is_named():
    train, _, _ = _rating_data()
    with pytest.raises(ValueError, match="parameter 'optimizer' of AutoRec: 'adagrad'.*Allowed: one of 'adam', 'adamw'"):
        AutoRec(hidden=8, epochs=1, optimizer="adagrad").fit(train, None, seed=0, trainer=KIT_TRAINER)


# 3 users, 4 items: user 2 and item 3 are in the catalogue without a training rating;
# mean 3.2; user means 4.0, 2.0; item 0's mean 3.5
COLD_PAIRS = (np.array([0, 1, 2, 2]), np.array([3, 3, 0, 3]))


@pytest.mark.parametrize("item_based, want", [
    (True, [4.0, 2.0, 3.2, 3.2]),  # item 3 cannot be encoded: its users' means; user 2: the mean
    (False, [3.2, 3.2, 3.5, 3.2]),  # U-AutoRec: user 2 cannot be encoded: item 0's mean
])
def test_a_row_without_training_ratings_gets_the_other_sides_mean(item_based, want, tmp_path):
    """AutoRec cannot encode a row nobody filled in training (an all-zero input gives one
    constant for everyone): the plugin and its ONNX graph answer the other side's mean."""
    import onnxruntime as ort

    from recarena.data.interactions import IdMap, Interactions

    u = np.array([0, 0, 0, 1, 1], np.int64)
    i = np.array([0, 1, 2, 0, 2], np.int64)
    r = np.array([5, 4, 3, 2, 2], np.float32)
    data = Interactions(u, i, IdMap(np.arange(3)), IdMap(np.arange(4)), r, rating_scale=(1.0, 5.0))
    m = AutoRec(hidden=4, epochs=3, lr=0.01, item_based=item_based).fit(data, None, seed=0, trainer=KIT_TRAINER)
    np.testing.assert_allclose(m.predict(*COLD_PAIRS), want, atol=1e-6)
    m.export_onnx(tmp_path, k=2)
    sess = ort.InferenceSession(str(tmp_path / "predict.onnx"), providers=["CPUExecutionProvider"])
    (onnx_got,) = sess.run(["score"], {"user": COLD_PAIRS[0], "item": COLD_PAIRS[1]})
    np.testing.assert_allclose(onnx_got, want, atol=1e-5)


def test_encoder_reg_weighs_the_encoders_l2_alone():
    import torch

    train, _, _ = _rating_data()
    m = AutoRec(hidden=4, epochs=1, reg=3.0).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net, batch = m.network_, {"row": torch.arange(m.network_.R.shape[0])}
    torch.set_grad_enabled(False)
    try:
        enc2, n = float(net.enc.weight.pow(2).sum()), float(net.M.sum())
        base = float(m.loss(net, batch))
        m.encoder_reg = 0.5
        # the objective's L2 is (encoder_reg |V|^2 + reg |W|^2) / 2, over the observed count like the error
        assert float(m.loss(net, batch)) == pytest.approx(base - (3.0 - 0.5) * enc2 / 2 / n, rel=1e-5)
        m.encoder_reg = None
        assert float(m.loss(net, batch)) == pytest.approx(base, rel=1e-6)
    finally:
        torch.set_grad_enabled(True)
