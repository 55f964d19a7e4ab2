"""Side features as CTR fields: every multi-valued column is kept."""

import pandas as pd

from recarena.data.interactions import IdMap, Interactions
from recarena.features import encode


def test_every_multi_valued_column_is_kept():
    items = pd.DataFrame({"genres": ["Drama|Comedy", "Comedy", ""], "tags": ["a", "b|c|d", "a|d"], "studio": ["x", "y", "x"]})
    d = Interactions([0, 1, 1], [0, 1, 2], IdMap(range(2)), IdMap(range(3)), item_features=items)
    f = encode(d)
    assert f.names == ["user_id", "item_id", "studio", "genres[0]", "genres[1]", "tags[0]", "tags[1]", "tags[2]"]
    item = f.item.numpy()
    genre_ids, tag_ids = item[:, 2:4], item[:, 4:7]
    # the two columns get disjoint vocabularies; each row's bag has as many non-padding ids as values
    assert set(genre_ids[genre_ids > 0].tolist()).isdisjoint(tag_ids[tag_ids > 0].tolist())
    assert [(r > 0).sum() for r in genre_ids] == [2, 1, 0] and [(r > 0).sum() for r in tag_ids] == [1, 3, 2]
    assert tag_ids[0, 0] == tag_ids[2, 0]  # 'a' is one feature wherever it occurs
    assert f.n_features == 1 + 2 + 3 + 2 + 2 + 4  # padding, users, items, studios, genres, tags
