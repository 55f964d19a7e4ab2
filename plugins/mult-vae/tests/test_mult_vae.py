import torch

from recarena.testing import KIT_TRAINER, _implicit_data, parametrize_with_checks
from recarena_mult_vae import MultVAE


@parametrize_with_checks([MultVAE(hidden=(32,), latent=8, epochs=12, batch_size=32, lr=0.02, total_anneal_steps=50)])
def test_conformance(model, check):
    check(model)


def test_kl_weight_anneals_linearly_to_the_cap():
    m = MultVAE(anneal_cap=0.2, total_anneal_steps=100)
    assert [m.beta(s) for s in (0, 10, 20, 50, 10**6)] == [0.0, 0.1, 0.2, 0.2, 0.2]


def test_loss_is_multinomial_likelihood_plus_beta_kl():
    """The objective by hand: -sum_i x_i log softmax(f(mu + sigma eps))_i + beta KL, at eval
    (z = mu) and with beta taken from the update count, which training advances by one a step."""
    train, _, _ = _implicit_data()
    m = MultVAE(hidden=(8,), latent=4, epochs=1, batch_size=1000, total_anneal_steps=10).fit(train, None, seed=0, trainer=KIT_TRAINER)
    net = m.network_.eval()
    assert int(net.steps) == 1  # one batch per epoch
    rows = torch.from_numpy(train.csr()[:5].toarray())
    with torch.no_grad():
        h = net.encoder(rows / rows.norm(dim=1, keepdim=True))
        mu, logvar = h[:, :4], h[:, 4:]
        logp = torch.log_softmax(net.decoder(mu), 1)
        kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1)
        want = (-(logp * rows).sum(1) + 0.1 * kl).mean()
        got = m.loss(net, {"row": rows, "user": torch.arange(5)})
    torch.testing.assert_close(got, want)
    assert int(net.steps) == 1  # evaluating the loss is not an update
