"""ONNX export helpers shared by plugins.

Two graph kinds, one signature each, so that serving treats every model alike:

- ``recommend``: ``user`` int64 ``[B]``, ``exclude`` int64 ``[B, S]`` (items to leave out,
  padded with -1 at the end; a model that scores from history reads it as the user's history,
  in time order for sequential models) -> ``items`` int64 ``[B, K]``, ``scores`` float32 ``[B, K]``. The whole
  catalogue is scored and the top-K taken inside the graph. Excluded positions score -inf.
- ``predict``: ``user`` int64 ``[B]``, ``item`` int64 ``[B]`` -> ``score`` float32 ``[B]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17


class RecommendGraph(nn.Module):
    """Wraps ``score(user [B]) -> [B, n_items]`` with exclusion and top-K."""

    def __init__(self, score: Callable, owner: nn.Module | None, n_items: int, k: int):
        super().__init__()
        self.owner = owner  # registers the network's weights with this module
        self._score = score
        self.n_items = n_items
        self.k = min(k, n_items)

    def forward(self, user: torch.Tensor, exclude: torch.Tensor):
        scores = self._score(user, exclude).float()
        # history-only scorers (EASE) ignore `user`; touching it keeps it a graph input, so
        # every recommend graph has the same signature
        scores = scores + (user * 0).unsqueeze(1).to(scores.dtype)
        # a spare column absorbs the -1 padding, then is dropped
        scores = torch.cat([scores, torch.zeros_like(scores[:, :1])], 1)
        idx = torch.where(exclude < 0, torch.full_like(exclude, self.n_items), exclude)
        scores = scores.scatter(1, idx, torch.full(idx.shape, float("-inf"), dtype=scores.dtype))
        top_s, top_i = torch.topk(scores[:, : self.n_items], self.k, dim=1)
        return top_i, top_s


class PredictGraph(nn.Module):
    def __init__(self, predict: Callable, owner: nn.Module | None, clip: tuple[float, float] | None):
        super().__init__()
        self.owner = owner
        self._predict = predict
        self.clip = clip

    def forward(self, user: torch.Tensor, item: torch.Tensor):
        out = self._predict(user, item).float()
        if self.clip is not None:
            out = out.clamp(self.clip[0], self.clip[1])
        return out


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # the TorchScript exporter is ~20x faster than dynamo for these small graphs
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        except Exception:  # an exporter that no longer exists, or a graph it cannot trace
            dims = {name: {ax: torch.export.Dim(f"{name}_{ax}") for ax in axes} for name, axes in dynamic.items() if name in inputs}
            # weights inline (the exporter's default writes them to a side file): the database
            # loads a model from one blob, and a bundle's graph must stand alone
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_shapes=dims, dynamo=True, external_data=False)


def export_recommend(score: Callable, owner: nn.Module | None, n_items: int, k: int, path: Path,
                     owner_model=None) -> dict:
    """``owner_model``: the Recommender, whose ``session_input`` the graph's entry records."""
    graph = RecommendGraph(score, owner, n_items, k)
    user = torch.zeros(3, dtype=torch.int64)
    exclude = torch.tensor([[0, -1], [1, 2], [-1, -1]], dtype=torch.int64)
    _export(graph, (user, exclude), path, ["user", "exclude"], ["items", "scores"],
            {"user": {0: "batch"}, "exclude": {0: "batch", 1: "seen"}, "items": {0: "batch"}, "scores": {0: "batch"}})
    return {"file": path.name, "kind": "recommend", "k": graph.k, "n_items": n_items,
            "session": bool(getattr(owner_model, "session_input", False)),
            "inputs": {"user": ["batch"], "exclude": ["batch", "seen"]},
            "outputs": {"items": ["batch", graph.k], "scores": ["batch", graph.k]}}


def export_predict(predict: Callable, owner: nn.Module | None, clip, path: Path) -> dict:
    graph = PredictGraph(predict, owner, clip)
    args = (torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    _export(graph, args, path, ["user", "item"], ["score"], {"user": {0: "batch"}, "item": {0: "batch"}, "score": {0: "batch"}})
    return {"file": path.name, "kind": "predict", "inputs": {"user": ["batch"], "item": ["batch"]}, "outputs": {"score": ["batch"]}}


def seen_padded(model, users: np.ndarray) -> np.ndarray:
    """The serving history of ``users`` (``model.serving_history()``: their training items, in
    time order for a sequential model) as an int64 ``[B, S]`` array padded with -1 at the end."""
    ip, ix = model.serving_history()
    rows = [ix[ip[u] : ip[u + 1]] for u in users]
    width = max(1, max((len(r) for r in rows), default=1))
    out = np.full((len(users), width), -1, np.int64)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


def manifest(graphs: list[dict]) -> dict:
    import onnx

    return {"opset": OPSET, "onnx": onnx.__version__, "torch": torch.__version__, "graphs": graphs}


def parity(model, folder: Path, graphs: list[dict], batch_sizes=(1, 7, 256), seed: int = 0) -> dict[str, float]:
    """Largest |onnxruntime - plugin| of each graph over random users at ``batch_sizes``.

    For recommend graphs the scores are compared position by position, and a returned id
    that differs where the plugin's scores are not tied counts as an infinite difference.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    worst: dict[str, float] = {}
    for graph in graphs:
        sess = ort.InferenceSession(str(Path(folder) / graph["file"]), providers=["CPUExecutionProvider"])
        diff = 0.0
        for bs in batch_sizes:
            users = rng.integers(0, model.n_users_, bs)
            if graph["kind"] == "recommend":
                items, scores = sess.run(["items", "scores"], {"user": users, "exclude": seen_padded(model, users)})
                want_items, want_scores = model.recommend(users, k=graph["k"])
                finite = np.isfinite(want_scores)
                if not np.array_equal(finite, np.isfinite(scores)):
                    return {**worst, graph["file"]: float("inf")}
                diff = max(diff, float(np.abs(scores[finite] - want_scores[finite]).max(initial=0.0)))
                gaps = np.diff(want_scores, axis=1, prepend=np.inf, append=-np.inf)
                clear = finite & (np.abs(gaps[:, :-1]) > 1e-4) & (np.abs(gaps[:, 1:]) > 1e-4)
                if not np.array_equal(items[clear], want_items[clear]):
                    diff = float("inf")
            else:
                items = rng.integers(0, model.n_items_, bs)
                (score,) = sess.run(["score"], {"user": users, "item": items})
                diff = max(diff, float(np.abs(score - model.predict(users, items)).max(initial=0.0)))
        worst[graph["file"]] = diff
    return worst
