"""The exporter's fallback path (dynamo, for graphs TorchScript cannot trace) writes one
self-contained file: the database loads a model from one blob."""

import numpy as np
import torch

from recarena import onnx_export as ox


def test_a_dynamo_export_keeps_its_weights_inside_the_file(tmp_path, monkeypatch):
    import onnxruntime as ort

    real = torch.onnx.export

    def no_torchscript(*args, **kwargs):
        if kwargs.get("dynamo") is False:
            raise RuntimeError("TorchScript cannot trace this graph")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_torchscript)
    table = torch.nn.Embedding(50, 8)
    holder = torch.nn.Module()
    holder.table = table
    graph = ox.export_recommend(lambda user, exclude: table(user) @ table.weight.T, holder, 50, 5, tmp_path / "recommend.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recommend.onnx"]
    sess = ort.InferenceSession((tmp_path / "recommend.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    items, scores = sess.run(["items", "scores"], {"user": np.array([3, 4], np.int64), "exclude": np.full((2, 1), -1, np.int64)})
    want = torch.topk(table(torch.tensor([3, 4])) @ table.weight.T, 5)
    np.testing.assert_allclose(scores, want.values.detach().numpy(), rtol=1e-5, atol=1e-5)
    assert graph["k"] == 5
