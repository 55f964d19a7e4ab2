import torch

from recarena.testing import KIT_TRAINER, _implicit_data, parametrize_with_checks
from recarena_mult_dae import MultDAE


@parametrize_with_checks([MultDAE(hidden=(16,), latent=8, epochs=12, batch_size=32, lr=0.02)])
def test_conformance(model, check):
    check(model)


def test_loss_is_multinomial_likelihood_plus_weight_l2():
    train, _, _ = _implicit_data()
    m = MultDAE(latent=4, epochs=1, reg=0.5).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net = m.network_.eval()
    rows = torch.from_numpy(train.csr()[:5].toarray())
    enc, dec = net.encoder[0], net.decoder[0]
    with torch.no_grad():
        logits = dec(torch.tanh(enc(rows / rows.norm(dim=1, keepdim=True))))
        want = -(torch.log_softmax(logits, 1) * rows).sum(1).mean() + 0.5 * (enc.weight.pow(2).sum() + dec.weight.pow(2).sum())
        got = m.loss(net, {"row": rows, "user": torch.arange(5)})
    torch.testing.assert_close(got, want)
