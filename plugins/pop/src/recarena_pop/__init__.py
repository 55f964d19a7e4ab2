"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

import numpy as np
import torch

from recarena import Capabilities, Recommender, Task


class Pop(Recommender):
    """Ranks items by their number of training interactions (not by batches or samples).

    Not personalized; ties are broken by the lower item id.
    """

    capabilities = Capabilities(tasks={Task.RANKING}, fold_in=True)

    def __init__(self):
        pass

    def _fit(self, train, valid, monitor):
        counts = train.item_counts().astype(np.float64)
        # a tiny id-based tie-break makes the order total and the same on every platform
        tie = np.arange(len(counts), dtype=np.float64) / (len(counts) * 10.0)
        self.popularity_ = torch.from_numpy((counts - tie).astype(np.float32))
        self.counts_ = train.item_counts()

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        return self.popularity_.unsqueeze(0).expand(len(users), -1).clone()

    def _score_history(self, users, indptr, indices):
        return self._score(users)  # the same list for everyone, whatever they have seen
