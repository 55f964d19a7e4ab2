import numpy as np
import pytest
import torch

from recarena.data.synthetic import walks
from recarena.testing import parametrize_with_checks
from recarena_svae import SVAE

TRAINER = {"progress_bar": False, "logger": "none"}


@parametrize_with_checks([SVAE(dim=8, hidden=16, latent=8, max_len=6, epochs=30, lr=0.01, batch_size=32, dropout=0.0, anneal_cap=0.05,
                               anneal_steps=50),
                          SVAE(dim=8, hidden=16, latent=8, max_len=6, epochs=30, lr=0.01, batch_size=32, dropout=0.0, anneal_cap=0.05,
                               anneal_steps=50, next_k=3, train_windows="all"),
                          SVAE(dim=8, hidden=16, latent=8, max_len=6, epochs=30, lr=0.01, batch_size=32, dropout=0.0, anneal_cap=0.05,
                               anneal_steps=50, tie_items=True, init="xavier"),
                          SVAE(dim=8, hidden=16, latent=8, max_len=6, epochs=30, lr=0.01, batch_size=32, dropout=0.0, anneal_cap=0.05,
                               anneal_steps=50, encoder_hidden=12, init="xavier")])
def test_conformance(model, check):
    check(model)



def test_learns_a_deterministic_successor():
    m = SVAE(dim=16, hidden=32, latent=16, max_len=5, epochs=60, lr=0.01, batch_size=16, dropout=0.0,
             anneal_steps=100).fit(walks(), trainer=TRAINER)
    items, _ = m.recommend(np.arange(60), k=1)
    assert (items[:, 0] == (np.arange(60) + 8) % 12).mean() > 0.9


def _kl(m):
    net, pad = m.network_, m.n_items_
    seq = m.network_.last_seq
    with torch.no_grad():
        mu, logvar = net(seq)
    return float((0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(-1)[seq < pad].mean())


def test_the_kl_weight_pulls_the_posterior_to_the_prior():
    # a VAE, not a GRU with a bottleneck: the stronger the annealed KL weight, the closer each
    # step's posterior stays to N(0, I)
    kw = dict(dim=16, hidden=32, latent=8, max_len=5, epochs=30, lr=0.01, batch_size=16, dropout=0.0, anneal_steps=50)
    free = SVAE(anneal_cap=0.0, **kw).fit(walks(), trainer=TRAINER)
    held = SVAE(anneal_cap=1.0, **kw).fit(walks(), trainer=TRAINER)
    assert _kl(held) < 0.5 * _kl(free)


def test_next_k_is_the_mean_cross_entropy_of_each_positions_next_k_items():
    m = SVAE(dim=8, hidden=16, latent=8, max_len=5, epochs=1, batch_size=16, next_k=3, train_windows="all").fit(walks(), trainer=TRAINER)
    from recarena.sequences import training_windows

    users, seq, target = training_windows(*walks().sequences(), 5, m.n_items_, every=True, horizon=3)
    batch = {"user": users[:16], "seq": seq[:16], "target": target[:16]}
    net = m.network_.eval()
    with torch.no_grad():
        mu = net(batch["seq"])[0]
        got = float(m.next_item_loss(net, mu, batch))
        logp = torch.log_softmax(net.decoder(mu), -1).numpy()
    want = []
    for b, t in np.argwhere(target[:16, :, 0].numpy() < m.n_items_):
        items = [i for i in target[b, t].tolist() if i < m.n_items_]
        want.append(-np.mean([logp[b, t, i] for i in items]))
    assert got == pytest.approx(float(np.mean(want)), rel=1e-5)


def test_next_k_needs_the_softmax_loss_and_says_so_before_fitting():
    with pytest.raises(ValueError, match="next_k.*ce"):
        SVAE(next_k=2, loss_type="bce").fit(walks())


def test_tied_items_score_the_decoded_state_against_the_item_embeddings():
    m = SVAE(dim=8, hidden=16, latent=8, max_len=5, epochs=2, batch_size=16, tie_items=True).fit(walks(), trainer=TRAINER)
    net = m.network_.eval()
    # no [hidden, n_items] output layer: the decoder ends in the embedding width
    assert net.decoder[-1].out_features == 8
    users = np.arange(10)
    with torch.no_grad():
        state = net.decoder(net(net.last_seq[users])[0][:, -1])  # [10, dim]
        want = state.numpy() @ net.item_emb.weight[:-1].numpy().T + net.item_bias.numpy()
        got = m.score_users(net, torch.from_numpy(users)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_xavier_init_starts_the_embeddings_small_and_the_recurrence_orthogonal():
    kw = dict(dim=32, hidden=16, latent=8, max_len=5, epochs=1, batch_size=16)
    torch.manual_seed(0)
    default = SVAE(**kw).build_encoder(100)
    xavier = SVAE(init="xavier", **kw).build_encoder(100)
    # PyTorch's embedding rows are N(0, 1); Xavier-normal's std is sqrt(2 / (101 + 32))
    assert float(default.item_emb.weight.detach()[:-1].std()) == pytest.approx(1.0, rel=0.1)
    assert float(xavier.item_emb.weight.detach()[:-1].std()) == pytest.approx((2 / 133) ** 0.5, rel=0.1)
    assert (xavier.item_emb.weight[-1] == 0).all()  # the padding row stays zero
    w = xavier.gru.weight_hh_l0.detach()  # [3 * hidden, hidden], orthonormal columns
    np.testing.assert_allclose((w.T @ w).numpy(), np.eye(16), atol=1e-5)


def test_encoder_hidden_reads_the_gru_state_through_the_papers_encoder_layer():
    m = SVAE(dim=8, hidden=16, latent=4, max_len=5, epochs=1, batch_size=16, encoder_hidden=12).fit(walks(), trainer=TRAINER)
    net = m.network_.eval()
    layer = net.encoder[0]
    assert (layer.in_features, layer.out_features, net.posterior.in_features) == (16, 12, 12)
    seq = net.last_seq[:5]
    with torch.no_grad():
        h, _ = net.gru(net.item_emb(seq))  # [5, T, 16]
        want = (torch.tanh(h @ layer.weight.T + layer.bias) @ net.posterior.weight.T + net.posterior.bias)[..., :4]
        torch.testing.assert_close(net(seq)[0], want)
    # 0 keeps the state's tanh only: no parameters between the GRU and the posterior
    plain = SVAE(dim=8, hidden=16, latent=4).build_encoder(20)
    assert plain.posterior.in_features == 16 and not list(plain.encoder.parameters())
