import itertools

import pytest
import torch

from recarena.errors import RecArenaError
from recarena.features import Fields
from recarena.params import InvalidParameterError
from recarena.testing import parametrize_with_checks
from recarena_wide_deep import WideDeep, _Net, cross_tables


@parametrize_with_checks([WideDeep(dim=4, hidden=(8,), epochs=3, lr=0.01),
                          WideDeep(dim=4, hidden=(8,), epochs=2, lr=0.01, crosses=["group*genres", "user_id*genres"],
                                   pretrain_epochs=2, reg=0.01)])
def test_conformance(model, check):
    check(model)


def _fields():
    # user: id (1-3), group (4-5); item: id (6-8), genres[0], genres[1] (9-11, 0 = empty slot)
    user = torch.tensor([[1, 4], [2, 5], [3, 4]])
    item = torch.tensor([[6, 9, 10], [7, 11, 0], [8, 10, 11]])
    return Fields(user, item, 12, ["user_id", "group", "item_id", "genres[0]", "genres[1]"])


def test_cross_ids_are_one_per_value_pair_and_padding_crosses_nothing():
    f = _fields()
    spec, n = cross_tables(f, ["group*genres", "user_id*group"])
    assert n == 1 + 2 * 3 + 3 * 2  # (group x genre) + (user x group) value pairs, plus padding
    net = _Net(12, 5, 2, [], 0.0, False, spec, n)
    rows = torch.stack([f.rows(torch.tensor([u]), torch.tensor([i]))[0] for u, i in itertools.product(range(3), range(3))])
    ids = net.cross_ids(rows)
    seen = {}
    for row, cid in zip(rows.tolist(), ids.tolist(), strict=True):
        pairs = [(row[1], row[3]), (row[1], row[4]), (row[0], row[1])]
        for (a, b), c in zip(pairs, cid, strict=True):
            if b == 0:
                assert c == 0
                continue
            assert 1 <= c < n
            assert seen.setdefault((a, b), c) == c
    assert len(set(seen.values())) == len(seen)  # distinct value pairs never share an id


def test_a_cross_over_an_unknown_field_names_the_fields_there_are():
    with pytest.raises(RecArenaError, match="'gender'.*fields: user_id, group, item_id, genres"):
        cross_tables(_fields(), ["gender*genres"])


def test_a_malformed_cross_is_refused_before_any_work():
    with pytest.raises(InvalidParameterError, match="crosses"):
        WideDeep(crosses=["gender-genres"]).fit(None)
