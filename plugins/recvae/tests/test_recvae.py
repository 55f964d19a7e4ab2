import torch

from recarena.testing import KIT_TRAINER, _implicit_data, parametrize_with_checks
from recarena_recvae import RecVAE


@parametrize_with_checks([RecVAE(hidden=16, latent=8, epochs=16, batch_size=64, lr=0.03, enc_epochs=1, dec_epochs=1),
                          RecVAE(hidden=16, latent=8, epochs=16, batch_size=64, lr=0.03, enc_epochs=1, dec_epochs=1,
                                 user_sampling="activity")])
def test_conformance(model, check):
    check(model)


def test_updates_alternate_encoder_then_decoder():
    """Each round trains the encoder alone for enc_epochs passes, then the decoder alone; the
    old encoder of the prior is the encoder as it stood when the decoder's turn came."""
    train, _, _ = _implicit_data()
    seen = []

    class Spy(RecVAE):
        def loss(self, net, batch):
            if net.training:
                seen.append((self.phase(int(net.steps), net.steps_per_epoch),
                             {n: p.detach().clone() for n, p in net.named_parameters()}))
            return super().loss(net, batch)

    m = Spy(hidden=8, latent=4, epochs=5, batch_size=50, enc_epochs=2, dec_epochs=1, lr=0.01)
    m.fit(train, None, seed=0, trainer=KIT_TRAINER)
    per = m.network_.steps_per_epoch
    assert per == 3  # 120 users / 50
    assert [p for p, _ in seen] == ["encoder"] * 6 + ["decoder"] * 3 + ["encoder"] * 6
    after = {n: p.detach() for n, p in m.network_.named_parameters()}
    states = [s for _, s in seen] + [after]
    for step, (part, _) in enumerate(seen):
        moved = {n for n in states[step] if not n.startswith("encoder_old.")
                 and not torch.equal(states[step][n], states[step + 1][n])}
        assert moved and all(n.startswith(part + ".") for n in moved), (step, part, sorted(moved)[:3])
    # the old encoder is the encoder at step 6 (the start of the decoder's turn)
    enc_at_6 = {n[len("encoder."):]: v for n, v in states[6].items() if n.startswith("encoder.")}
    for n, v in m.network_.encoder_old.state_dict().items():
        assert torch.equal(v, enc_at_6[n]), n


def test_mixture_must_be_three_weights_summing_to_one():
    import pytest

    train, _, _ = _implicit_data()
    with pytest.raises(ValueError, match="mixture.*three positive weights summing to 1"):
        RecVAE(mixture=(0.5, 0.6, 0.1), epochs=1).fit(train, None, seed=0, trainer=KIT_TRAINER)


def test_activity_sampling_draws_users_in_proportion_to_their_items():
    """user_sampling="activity": each batch's users are drawn with replacement, a user as often
    as they have training items (what interaction-wise batches give); "uniform" is each user once."""
    import numpy as np

    train, _, _ = _implicit_data()
    seen = {"uniform": [], "activity": []}

    class Spy(RecVAE):
        def loss(self, net, batch):
            if net.training:
                seen[self.user_sampling].append(batch["user"].clone())
            return super().loss(net, batch)

    for how in seen:
        m = Spy(hidden=8, latent=4, epochs=40, batch_size=30, enc_epochs=1, dec_epochs=1, lr=0.01, user_sampling=how)
        m.fit(train, None, seed=0, trainer=KIT_TRAINER)
    counts = train.user_counts()
    users = np.flatnonzero(counts > 0)
    uniform = torch.cat(seen["uniform"]).numpy()
    # an epoch of "uniform" is each user exactly once
    assert np.array_equal(np.sort(uniform[: len(users)]), users)
    drawn = np.bincount(torch.cat(seen["activity"]).numpy(), minlength=len(counts))[users]
    assert drawn.sum() == 40 * len(users)
    # the frequencies follow the items per user: correlation near 1, and the heaviest users
    # come several times as often as the lightest
    assert np.corrcoef(drawn, counts[users])[0, 1] > 0.9
    heavy, light = counts[users] >= np.quantile(counts[users], 0.8), counts[users] <= np.quantile(counts[users], 0.2)
    ratio = counts[users][heavy].mean() / counts[users][light].mean()
    assert drawn[heavy].mean() / drawn[light].mean() > 0.7 * ratio


def test_xavier_init_gives_xavier_normal_weights_and_zero_biases():
    import math

    train, _, _ = _implicit_data()
    nets = {}
    for init in ("pytorch", "xavier"):
        m = RecVAE(hidden=64, latent=32, epochs=1, init=init)
        m._validate_params()
        nets[init] = m.build_network(train)
    fc = nets["xavier"].encoder.fc[1]  # 64 -> 64
    want = math.sqrt(2.0 / (64 + 64))
    assert abs(fc.weight.std().item() - want) / want < 0.1
    assert all(torch.count_nonzero(lin.bias) == 0 for lin in nets["xavier"].modules() if isinstance(lin, torch.nn.Linear))
    # PyTorch's own init draws biases, and its weights are uniform with a smaller spread
    assert torch.count_nonzero(nets["pytorch"].encoder.fc[1].bias) > 0
    # the prior's old encoder starts as the encoder
    for a, b in zip(nets["xavier"].encoder.state_dict().values(), nets["xavier"].encoder_old.state_dict().values()):
        assert torch.equal(a, b)
