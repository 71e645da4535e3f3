"""Faces keeps its shape: every field one row per face, checked when built, sliced together."""

import numpy as np
import pytest

from edgeemo.core.types import Faces


def faces(n: int) -> Faces:
    return Faces(np.arange(n * 4, dtype=np.float32).reshape(n, 4), np.zeros((n, 5, 2), np.float32),
                 np.linspace(0.5, 1, n, dtype=np.float32), probs=np.full((n, 7), 1 / 7, np.float32),
                 ids=np.arange(10, 10 + n), due=np.array([True, False, True][:n]))


def test_a_subset_keeps_every_field():
    picked = faces(3)[[0, 2]]
    assert len(picked) == 2
    assert picked.boxes[1].tolist() == [8, 9, 10, 11]
    assert picked.ids.tolist() == [10, 12] and picked.due.tolist() == [True, True]
    assert picked.probs.shape == (2, 7) and picked.landmarks.shape == (2, 5, 2)


def test_a_field_that_is_not_set_stays_unset():
    bare = Faces(np.zeros((2, 4), np.float32), np.zeros((2, 5, 2), np.float32), np.ones(2, np.float32))
    assert bare[[1]].probs is None and bare[[1]].ids is None


@pytest.mark.parametrize("field, value", [("scores", np.ones(2, np.float32)), ("landmarks", np.zeros((3, 4, 2))),
                                          ("probs", np.zeros((3, 6))), ("ids", np.arange(4))])
def test_a_field_of_the_wrong_shape_is_refused(field, value):
    good = faces(3)
    kwargs = {name: getattr(good, name) for name in ("boxes", "landmarks", "scores", "probs", "ids", "due")}
    with pytest.raises(ValueError, match=f"Faces.{field}"):
        Faces(**(kwargs | {field: value}))
