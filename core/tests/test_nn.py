"""recarena.nn: the shared blocks compute what their formulas say."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recarena.nn import CIN, MLP, BiasedDot, CrossNetwork, FMPart, bi_interaction, embedding_l2


def test_fm_pairwise_term_equals_the_quadratic_sum():
    net = FMPart(10, 3)
    torch.nn.init.normal_(net.v.weight)
    torch.nn.init.normal_(net.w.weight)
    with torch.no_grad():
        net.v.weight[0].zero_()
        net.w.weight[0].zero_()
    feats = torch.tensor([[1, 4, 7, 0]])
    v, w = net.v.weight.detach(), net.w.weight.detach().squeeze(-1)
    ids = [1, 4, 7]
    want = sum(float(w[i]) for i in ids) + sum(float(v[a] @ v[b]) for k, a in enumerate(ids) for b in ids[k + 1 :])
    np.testing.assert_allclose(float(net(feats).detach()), want, rtol=1e-5)


def test_fm_padding_feature_starts_at_zero():
    net = FMPart(5, 4, bias=2.5)
    assert float(net.w0.detach()) == 2.5
    assert torch.count_nonzero(net.v.weight[0]) == 0 and torch.count_nonzero(net.w.weight) == 0


def test_embedding_l2_counts_the_rows_a_batch_uses():
    table = torch.nn.Embedding(6, 2)
    with torch.no_grad():
        table.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 3.0], [1.0, 1.0], [4.0, 0.0], [0.0, 0.0]]))
    feats = torch.tensor([[1, 2, 0], [1, 3, 3]])
    # row 1: |v1|^2 + |v2|^2 = 5 + 9 = 14; row 2: |v1|^2 + 2 |v3|^2 = 5 + 4 = 9; the mean 11.5, x reg
    assert float(embedding_l2(0.1, table, feats).detach()) == pytest.approx(1.15)
    assert embedding_l2(0.0, table, feats) == 0.0


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.booleans(), st.booleans())
def test_biased_dot_pairs_equal_the_full_score_rows(n_users, n_items, dim, bias, with_mu):
    torch.manual_seed(0)
    net = BiasedDot(n_users, n_items, dim, mu=3.5 if with_mu else None, init_std=0.5, bias=bias)
    if bias:
        with torch.no_grad():
            net.user_bias.weight.normal_()
            net.item_bias.weight.normal_()
    users = torch.arange(n_users)
    full = net.score(users)
    assert full.shape == (n_users, n_items) and full.dtype == torch.float32
    u, i = torch.meshgrid(users, torch.arange(n_items), indexing="ij")
    torch.testing.assert_close(net(u.reshape(-1), i.reshape(-1)).view(n_users, n_items), full)
    want = (net.user_emb.weight @ net.item_emb.weight.T + (3.5 if with_mu else 0.0)).detach()
    if bias:
        want = want + net.user_bias.weight.detach() + net.item_bias.weight.detach().T
    torch.testing.assert_close(full.detach(), want)


def test_mlp_layout_and_width():
    m = MLP(8, [16, 4], dropout=0.1, batch_norm=True, out_dim=1, input_dropout=0.2)
    kinds = [type(x).__name__ for x in m]
    assert kinds == ["Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout",
                     "Linear"]
    assert m.out_features == 1 and m.eval()(torch.zeros(3, 8)).shape == (3, 1)
    tower = MLP(8, [4])
    assert tower.out_features == 4 and [type(x).__name__ for x in tower] == ["Linear", "ReLU", "Dropout"]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 1000))
def test_bi_interaction_is_twice_the_sum_over_pairs(n_fields, dim, seed):
    e = torch.randn(3, n_fields, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    want = torch.zeros(3, dim, dtype=torch.float64)
    for f in range(n_fields):
        for g in range(f + 1, n_fields):
            want += e[:, f] * e[:, g]
    torch.testing.assert_close(bi_interaction(e), 2 * want)


def test_cin_layers_follow_the_papers_formula():
    """X^k_{h,:} = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_{i,:} * X^0_{j,:}) + b, ReLU; split_half sends the
    first half of every layer but the last to the output and passes the second half on."""
    torch.manual_seed(0)
    m, d = 3, 4
    cin = CIN(m, [4, 2], split_half=True)
    assert cin.out_features == 2 + 2
    x0 = torch.randn(2, m, d)

    def layer(conv, x):
        w, b = conv.weight.detach()[:, :, 0], conv.bias.detach()  # [H, H_prev * m]
        h_prev = x.shape[1]
        out = torch.zeros(x.shape[0], w.shape[0], d)
        for h in range(w.shape[0]):
            for i in range(h_prev):
                for j in range(m):
                    out[:, h] += w[h, i * m + j] * x[:, i] * x0[:, j]
            out[:, h] += b[h]
        return torch.relu(out)

    x1 = layer(cin.convs[0], x0)
    x2 = layer(cin.convs[1], x1[:, 2:])
    want = torch.cat([x1[:, :2].sum(-1), x2.sum(-1)], 1)
    torch.testing.assert_close(cin(x0).detach(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank,experts", [(None, 1), (2, 1), (2, 3)])
def test_cross_network_follows_dcn_v2(rank, experts):
    """Full rank: x_{l+1} = x0 * (W x_l + b) + x_l. Low rank: x0 * (U tanh(C tanh(V^T x_l)) + b) per
    expert, mixed by a softmax gate over the experts."""
    torch.manual_seed(0)
    dim = 5
    net = CrossNetwork(dim, 2, rank, experts)
    with torch.no_grad():
        for b in net.bias:
            b.normal_()
    x0 = torch.randn(3, dim)
    x = x0
    for layer in range(2):
        b = net.bias[layer].detach()
        if rank is None:
            x = x0 * (x @ net.w[layer].detach() + b) + x
            continue
        outs = [x0 * (torch.tanh(torch.tanh(x @ net.v[layer][e]) @ net.c[layer][e]) @ net.u[layer][e] + b)
                for e in range(experts)]
        if experts == 1:
            mix = outs[0]
        else:
            g = torch.softmax(x @ net.gate[layer].weight.T, -1)
            mix = sum(g[:, e : e + 1] * outs[e] for e in range(experts))
        x = (mix + x).detach()
    torch.testing.assert_close(net(x0).detach(), x, rtol=1e-5, atol=1e-5)


def test_cross_network_weight_norm_counts_the_cross_weights_only():
    # the values only: no graph, so reading them as floats does not warn
    with torch.no_grad():
        full = CrossNetwork(4, 2)
        assert float(full.weight_norm()) == pytest.approx(sum(float(w.pow(2).sum()) for w in full.w))
        low = CrossNetwork(4, 1, rank=2, n_experts=2)
        want = sum(float(p.pow(2).sum()) for p in (low.v[0], low.c[0], low.u[0]))
        assert float(low.weight_norm()) == pytest.approx(want)
