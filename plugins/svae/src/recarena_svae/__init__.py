"""SVAE (Sachdeva, Manco, Ritacco & Pudi, WSDM 2019): a GRU reads the user's items; after each
one a Gaussian latent z_t ~ q(z | h_t) is drawn (a VAE per time step) and decoded by an MLP
into a multinomial over the catalogue for the next item. Trained on the multinomial
likelihood of the next item plus the KL divergence to N(0, I), weighted by beta annealed
linearly from 0 to ``anneal_cap`` over ``anneal_steps`` batches (Mult-VAE's annealing);
scored from the posterior mean. ``next_k`` > 1 trains each position on the paper's
multi-step targets (its default ``next_k`` loss, k = 4): a multinomial over the next k items
of the user's training sequence; 1 predicts the next item only, what the protocols here judge.
``tie_items`` ends the decoder in the item embeddings (a state of width ``dim`` scored by dot
product, plus a bias per item) instead of its own output layer over the catalogue;
``init="xavier"`` initialises as GRU4Rec does; ``encoder_hidden`` > 0 puts the paper's code's
encoder layer (Linear to that width, tanh; 150 there) between the GRU and the posterior, 0 reads
the state through a tanh only."""

from __future__ import annotations

import torch
from torch import nn

from recarena.nn import init_item_gru
from recarena.params import Interval, Options
from recarena.sequences import SequentialRecommender


class _Net(nn.Module):
    def __init__(self, n_items, dim, hidden, latent, dropout, tie_items=False, init="pytorch", encoder_hidden=0):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)  # last id pads
        self.drop = nn.Dropout(dropout)
        # bias-free, as GRU4Rec's: leading padding (the zero row) leaves the state at zero
        self.gru = nn.GRU(dim, hidden, batch_first=True, bias=False)
        # encoder_hidden: the paper's code reads the state through Linear + tanh first
        self.encoder = nn.Sequential(nn.Linear(hidden, encoder_hidden), nn.Tanh()) if encoder_hidden else nn.Tanh()
        self.posterior = nn.Linear(encoder_hidden or hidden, 2 * latent)  # -> (mu, log variance)
        # tie_items: the decoder ends in the item embeddings (GRU4Rec's scoring) and a bias per
        # item instead of its own [hidden, n_items] layer
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, dim if tie_items else n_items))
        self.item_bias = nn.Parameter(torch.zeros(n_items)) if tie_items else None
        if init == "xavier":
            # GRU4Rec's: small embedding rows (N(0, 1) ones, PyTorch's default, give tied
            # scores of size sqrt(dim) before any training), an orthogonal recurrence
            init_item_gru(self.item_emb, self.gru)
        # batches seen, for the KL annealing: a buffer, so it restarts with each fit
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.item_emb.weight.data[n_items].zero_()

    def forward(self, seq):
        """seq int64 [B, T] -> (mu, logvar) float32 [B, T, latent] each"""
        h, _ = self.gru(self.drop(self.item_emb(seq)))
        mu, logvar = self.posterior(self.encoder(h)).chunk(2, dim=-1)
        return mu, logvar


class SVAE(SequentialRecommender):
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [Interval(int, 1, None)], "latent": [Interval(int, 1, None)],
        "dropout": [Interval(float, 0, 1, closed="left")], "anneal_cap": [Interval(float, 0, None)],
        "anneal_steps": [Interval(int, 1, None)], "next_k": [Interval(int, 1, None)], "tie_items": [bool],
        "init": [Options("pytorch", "xavier")], "encoder_hidden": [Interval(int, 0, None)],
    }

    def __init__(self, dim: int = 64, hidden: int = 128, latent: int = 64, dropout: float = 0.3,
                 anneal_cap: float = 0.2, anneal_steps: int = 20000, next_k: int = 1, tie_items: bool = False, init: str = "pytorch", encoder_hidden: int = 0, max_len: int = 50, train_windows: str = "last", loss_type: str = "ce",
                 n_neg: int = 1, neg_sampling: str = "uniform", lr: float = 0.001, weight_decay: float = 0.0,
                 epochs: int = 200, batch_size: int = 256, optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.anneal_cap = anneal_cap
        self.anneal_steps = anneal_steps
        self.next_k = next_k
        self.tie_items = tie_items
        # "pytorch": the layers' own initialisation (the paper's code); "xavier": GRU4Rec's
        self.init = init
        # width of the encoder layer between the GRU and the posterior (0: none, tanh only)
        self.encoder_hidden = encoder_hidden
        self.max_len = max_len
        self.train_windows = train_windows
        self.loss_type = loss_type
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer

    def _validate_params(self):
        super()._validate_params()
        if self.next_k > 1 and self.loss_type != "ce":
            from recarena.params import InvalidParameterError

            raise InvalidParameterError("svae", "next_k", self.next_k, f'1 with loss_type "{self.loss_type}" (next_k > 1 needs "ce")')

    def target_horizon(self):
        return int(self.next_k)

    def build_encoder(self, n_items):
        return _Net(n_items, int(self.dim), int(self.hidden), int(self.latent), float(self.dropout), bool(self.tie_items), str(self.init),
                    int(self.encoder_hidden))

    def encode(self, network, seq):
        return network(seq)[0]  # the posterior mean: scoring is deterministic

    def output(self, network, h, items=None):
        out = network.decoder(h)
        bias = getattr(network, "item_bias", None)  # absent from networks saved before tie_items
        if bias is None:  # out: logits of every item [..., n_items]
            return out if items is None else out.gather(-1, items)
        if items is None:  # out: a state [..., dim] scored against the item embeddings
            return out @ network.item_emb.weight[:-1].T + bias
        return (network.item_emb(items) * out.unsqueeze(-2)).sum(-1) + bias[items]

    def loss(self, network, batch):
        batch = self.trim(batch)
        mu, logvar = network(batch["seq"])
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        nll = self.next_item_loss(network, z, batch)
        real = self.has_target(batch["target"])
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)[real].sum(-1).mean()
        beta = min(float(self.anneal_cap), float(self.anneal_cap) * int(network.steps) / int(self.anneal_steps))
        network.steps += 1
        return nll + beta * kl
