"""Factorization machine (Rendle 2010) over categorical fields:
y = w0 + sum_f w_f + 1/2 sum_d ((sum_f v_fd)^2 - sum_f v_fd^2), the O(k n) form.

Rating task: y is the rating (MSE). CTR task (0/1 labels): y is a logit (cross-entropy).
"""

from __future__ import annotations

from recarena import Capabilities, Task
from recarena.ctr import FactorizationMachine


class FM(FactorizationMachine):
    """``recarena.ctr.FactorizationMachine`` as a contestant. ``lr`` .005 was chosen on
    ml1m-ctr's validation AUC from {.001, .002, .005}."""

    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
