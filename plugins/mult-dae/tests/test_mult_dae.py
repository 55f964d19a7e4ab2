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


def test_sampling_by_interactions_visits_a_user_once_per_item():
    """sampling="interactions" (RecBole's scheme): an epoch's batches hold each user as many
    times as they have training items; "users": once each."""
    import numpy as np

    train, _, _ = _implicit_data()
    counts = np.bincount(train.user, minlength=train.n_users)
    for sampling, want in (("interactions", counts), ("users", (counts > 0).astype(int))):
        seen: list = []

        class Spy(MultDAE):
            def loss(self, net, batch, seen=seen):
                seen.append(batch["user"].numpy().copy())
                np.testing.assert_array_equal(batch["row"].numpy(), train.csr()[batch["user"].numpy()].toarray() > 0)
                return super().loss(net, batch)

        Spy(latent=4, epochs=1, batch_size=64, sampling=sampling).fit(train, None, seed=0, trainer=KIT_TRAINER)
        np.testing.assert_array_equal(np.bincount(np.concatenate(seen), minlength=train.n_users), want)
