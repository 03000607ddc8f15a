import numpy as np
import pytest

from advkeras.data import Dataset, DataError, composition, stratified_indices, stratified_subset


def _by_patient():
    """Stored patient by patient, as a patient-wise split is: the first 40 rows are one patient, one class."""
    y = np.r_[np.zeros(40, int), np.zeros(30, int), np.ones(20, int), np.ones(10, int)]
    groups = np.r_[np.full(40, "p1"), np.full(30, "p2"), np.full(20, "p3"), np.full(10, "p4")]
    return Dataset(np.zeros((100, 2, 2, 1), np.float32), y, groups, ("no", "yes"))


def test_subset_is_stratified_and_spread_over_patients_not_the_first_rows():
    ds = _by_patient()
    sub = stratified_subset(ds, 20, seed=0)
    assert composition(sub)["per_class"] == {"no": 14, "yes": 6}  # the set's 70/30 shares
    assert set(composition(sub)["per_group"]) == {"p1", "p2", "p3", "p4"}
    counts = composition(sub)["per_group"]
    assert abs(counts["p1"] - counts["p2"]) <= 1 and abs(counts["p3"] - counts["p4"]) <= 1  # patients take turns


def test_subset_is_seeded_and_keeps_rare_classes():
    ds = _by_patient()
    assert np.array_equal(stratified_indices(ds.y, 20, groups=ds.groups, seed=3),
                          stratified_indices(ds.y, 20, groups=ds.groups, seed=3))
    assert not np.array_equal(stratified_indices(ds.y, 20, groups=ds.groups, seed=3),
                              stratified_indices(ds.y, 20, groups=ds.groups, seed=4))
    y = np.r_[np.zeros(99, int), 1]
    assert 99 in stratified_indices(y, 5, seed=0)  # one image of a class still gets in
    assert stratified_subset(ds, 1000) is ds and len(stratified_subset(ds, None)) == 100
    with pytest.raises(DataError):
        stratified_indices(ds.y, 0)
