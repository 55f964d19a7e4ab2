"""Small ONNX graphs built directly with onnx.helper, for tests and benchmarks of the
inference database (no torch needed to make them)."""

from __future__ import annotations

import numpy as np


def _model(nodes, inputs, outputs, inits=()):
    from onnx import helper, numpy_helper

    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def relu(width: int = 3) -> bytes:
    """x float32 [N, width] -> y = relu(x) float32 [N, width]"""
    from onnx import TensorProto, helper

    return _model([helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])])


def two_io() -> bytes:
    """a float32 [N, 2], b float32 [N, 2] -> s = a + b, d = a - b (two inputs, two outputs)"""
    from onnx import TensorProto, helper

    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2])  # noqa: E731
    return _model([helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Sub", ["a", "b"], ["d"])],
                  [f("a"), f("b")], [f("s"), f("d")])


def mf_topk(user_factors: np.ndarray, item_factors: np.ndarray, k: int) -> bytes:
    """A top-K recommender: user int64 [B] -> items int64 [B, k], scores float32 [B, k], the
    k largest of U[user] @ V.T (float32 factors [n_users, d] and [n_items, d])."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Gather", ["U", "user"], ["u"], axis=0),
        helper.make_node("MatMul", ["u", "Vt"], ["all"]),
        helper.make_node("TopK", ["all", "K"], ["scores", "items"], axis=1, largest=1, sorted=1),
    ]
    inits = [("U", user_factors.astype(np.float32)), ("Vt", np.ascontiguousarray(item_factors.T.astype(np.float32))),
             ("K", np.array([k], dtype=np.int64))]
    return _model(nodes, [helper.make_tensor_value_info("user", TensorProto.INT64, [None])],
                  [helper.make_tensor_value_info("items", TensorProto.INT64, [None, k]),
                   helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, k])], inits)


def slow(n: int = 512, depth: int = 200) -> bytes:
    """x float32 [n, n] -> y = x @ x @ ... @ x (depth MatMuls on the input, so nothing can be
    folded at load): a model that takes a while (about depth * 2 n^3 flops)."""
    from onnx import TensorProto, helper

    nodes, prev = [], "x"
    for i in range(depth):
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "x"], [out]))
        prev = out
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])])


def topk_reference(user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, k: int):
    """numpy reference of :func:`mf_topk`: (items int64 [B, k], scores float32 [B, k])"""
    s = user_factors[users].astype(np.float32) @ item_factors.T.astype(np.float32)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int64), np.take_along_axis(s, idx, 1)
