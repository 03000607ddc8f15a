"""The index store of prediction similarity: unflushable history, cross-user matches, blinding, batches."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advkeras.defenses.prediction_similarity import (NO_HISTORY, IndexedPredictionSimilarity, build_defended_model,
                                                     calibrate_threshold, canonical_views, content_fingerprint,
                                                     query, similarity_layer)
from advkeras.errors import InputError

THRESHOLD = 0.05  # 1 - cosine; BIM-like noise of 8/255 gives ~0.002, neighbouring patches ~0.5-0.9


@pytest.fixture(scope="module")
def classifier():
    return tf.keras.Sequential([tf.keras.Input((50, 50, 3)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])


@pytest.fixture(scope="module")
def patches(idc_splits):
    x = idc_splits[2].x
    return x[np.random.default_rng(0).permutation(len(x))[:300]]


def _defended(classifier, **kw):
    kw.setdefault("threshold", THRESHOLD)
    kw.setdefault("global_threshold", THRESHOLD)
    kw.setdefault("capacity", 2048)
    kw.setdefault("global_min_matches", kw.get("min_matches", 3))
    return build_defended_model(classifier, **kw)


def _noisy(x, rng, eps=8 / 255):
    return np.clip(x + rng.uniform(-eps, eps, x.shape), 0, 1).astype(np.float32)


BLINDING = {
    "brightness": lambda x, r: np.clip(x + r.uniform(-0.06, 0.06), 0, 1),
    "contrast": lambda x, r: np.clip((x - 0.5) * r.uniform(0.8, 1.2) + 0.5, 0, 1),
    "colour": lambda x, r: np.clip(x + r.uniform(-0.06, 0.06, 3), 0, 1),
    "rotation/mirror": lambda x, r: (lambda y: y[:, ::-1] if r.random() < 0.5 else y)(np.rot90(x, r.integers(4))),
    "shift": lambda x, r: np.roll(x, tuple(r.integers(-1, 2, 2)), axis=(0, 1)),  # relative shifts <= 2: covered
    "noise": lambda x, r: np.clip(x + r.uniform(-16 / 255, 16 / 255, x.shape), 0, 1),
}


def test_views_ignore_free_transforms_and_keep_patches_apart(patches):
    """Distances of the identity view to the best view of a transformed copy are tiny; of other patches large."""
    rng = np.random.default_rng(1)
    a = patches[:20]
    va = canonical_views(a).numpy()[:, 0]
    for name, f in BLINDING.items():
        b = np.stack([f(_noisy(x, rng), rng) for x in a]).astype(np.float32)
        d = 1 - np.einsum("nd,nvd->nv", va, canonical_views(b).numpy()).max(1)
        assert np.median(d) < 0.02 and d.max() < THRESHOLD * 2, (name, d)
    other = canonical_views(patches[20:40]).numpy()
    d = 1 - np.einsum("nd,nvd->nv", va, other).max(1)
    assert d.min() > THRESHOLD * 2, d


def test_fingerprint_separates_exact_copies_from_near_copies(patches):
    fp = content_fingerprint(np.stack([patches[0], patches[0], patches[1]])).numpy()
    near = content_fingerprint(np.clip(patches[:1] + 1 / 255, 0, 1)).numpy()
    assert fp[0] == fp[1] != fp[2] and near[0] != fp[0] and (fp > 0).all()


def test_attack_process_alarms_after_min_matches_and_benign_patches_never(classifier, patches):
    model = _defended(classifier, min_matches=3)
    rng = np.random.default_rng(0)
    alarms = [bool(query(model, _noisy(patches[:1], rng), "attacker")["alarm"][0]) for _ in range(6)]
    assert alarms == [False, False, False, True, True, True]
    benign = query(model, patches[1:257], [f"user-{i % 8}" for i in range(256)])
    assert not benign["alarm"].any()
    assert (benign["min_distance"][benign["min_distance"] < NO_HISTORY] > THRESHOLD).all()


def test_identical_resends_never_count(classifier, patches):
    model = _defended(classifier, min_matches=1)
    for _ in range(5):
        out = query(model, patches[:2], ["reader-a", "reader-b"])  # two colleagues re-open the same patches
    assert not out["alarm"].any() and (out["min_distance"] == NO_HISTORY).all()
    assert (out["global_min_distance"] == NO_HISTORY).all()


@pytest.mark.parametrize("name", sorted(BLINDING))
def test_blinding_does_not_hide_an_attack(classifier, patches, name):
    model = _defended(classifier, min_matches=3)
    rng = np.random.default_rng(2)
    alarms = [bool(query(model, BLINDING[name](_noisy(patches[3], rng), rng)[None].astype(np.float32),
                         "attacker")["alarm"][0]) for _ in range(8)]
    assert sum(alarms) >= 4 and alarms[-1], alarms


def test_cover_queries_do_not_flush_the_history(classifier, patches):
    """32 unrelated cover queries before each attack query flushed the ring store; here they change nothing."""
    model = _defended(classifier, min_matches=3)
    ring = build_defended_model(classifier, store="ring", threshold=2e-4, history=32, n_slots=64)
    rng = np.random.default_rng(3)
    got = {"index": [], "ring": []}
    for step in range(6):
        q = _noisy(patches[:1], rng, eps=2 / 255)
        cover = patches[10 + 40 * step:50 + 40 * step]
        for name, m in (("index", model), ("ring", ring)):
            query(m, cover, "attacker")
            got[name].append(bool(query(m, q, "attacker")["alarm"][0]))
    assert got["index"][3:] == [True] * 3
    assert not any(got["ring"])  # the flushing attack works on the ring store: why the index is the default


def test_new_id_per_query_is_caught_across_users_and_named(classifier, patches):
    model = _defended(classifier, min_matches=2)
    rng = np.random.default_rng(4)
    outs = [query(model, _noisy(patches[5:6], rng), f"sybil-{i}") for i in range(5)]
    assert [bool(o["alarm"][0]) for o in outs] == [False, False, True, True, True]
    assert all(bool(o["global_alarm"][0]) and not o["user_alarm"][0] for o in outs[2:])
    assert outs[-1]["matched_user"][0].decode().startswith("sybil-")
    assert outs[-1]["matched_user"][0] != b"sybil-4"


def test_user_scope_alone_misses_many_ids_global_alone_misses_one_id(classifier, patches):
    rng = np.random.default_rng(5)
    user_only = _defended(classifier, scope="user", min_matches=2)
    global_only = _defended(classifier, scope="global", min_matches=2)
    many = [query(user_only, _noisy(patches[6:7], rng), f"id-{i}")["alarm"][0] for i in range(5)]
    one = [query(global_only, _noisy(patches[6:7], rng), "one-id")["alarm"][0] for i in range(5)]
    assert not any(many) and not any(one)


def test_rows_of_one_request_are_matched_with_each_other(classifier, patches):
    model = _defended(classifier, min_matches=2)
    rng = np.random.default_rng(6)
    batch = np.concatenate([_noisy(np.repeat(patches[7:8], 3, 0), rng), patches[8:10]])
    out = query(model, batch, "batcher")
    assert out["alarm"].tolist() == [False, False, True, False, False]
    assert out["distance_alarm"].tolist()[:3] == [0, 1, 2]


def test_capacity_bounds_the_history_oldest_first(classifier, patches):
    model = _defended(classifier, capacity=64, min_matches=1)
    rng = np.random.default_rng(7)
    query(model, _noisy(patches[:1], rng), "u")
    assert query(model, _noisy(patches[:1], rng), "u")["alarm"][0]
    query(model, patches[20:120], "u")  # 100 other queries: the two above are overwritten
    assert not query(model, _noisy(patches[:1], rng), "u")["alarm"][0]
    layer = similarity_layer(model)
    assert int(layer.queries.numpy()) == 103 and (layer.get_state()["stored_seq"] > 39).all()


def test_calibration_sets_both_thresholds_under_the_ceiling(classifier, idc_splits):
    from advkeras.evaluation.traffic import benign_sessions

    val = idc_splits[1]
    model = _defended(classifier, threshold=None, global_threshold=None)
    sessions = {u: val.x[i] for u, i in benign_sessions(val, 30, 8, seed=0).items()}
    cal = calibrate_threshold(model, sessions, target_fpr=0.1, progress=False)
    layer = similarity_layer(model)
    assert 0 < cal.threshold <= layer.max_distance and 0 < cal.global_threshold <= layer.max_distance
    assert float(layer.global_threshold.numpy()) == pytest.approx(cal.global_threshold)
    assert cal.user_fpr <= 0.1 and int(layer.queries.numpy()) == 0  # state left clean
    rng = np.random.default_rng(8)
    alarms = [query(model, _noisy(val.x[:1], rng), "attacker")["alarm"][0] for _ in range(6)]
    assert alarms[-1]


def test_state_survives_keras_save_and_load(classifier, patches, tmp_path):
    model = _defended(classifier, min_matches=2)
    rng = np.random.default_rng(9)
    for _ in range(2):
        query(model, _noisy(patches[:1], rng), "attacker")
    model.save(tmp_path / "m.keras")
    loaded = tf.keras.models.load_model(tmp_path / "m.keras")
    out = query(loaded, _noisy(patches[:1], rng), "attacker")
    assert out["alarm"][0] and out["distance_alarm"][0] == 2
    assert similarity_layer(loaded).get_state()["stored_user"][1] == b"attacker"  # sequence numbers start at 1


def test_bad_settings_are_refused_clearly(classifier):
    with pytest.raises(InputError, match="store='ring'"):
        build_defended_model(classifier, metric="ssim")
    with pytest.raises(InputError, match="unknown store"):
        build_defended_model(classifier, store="disk")
    with pytest.raises(InputError, match="orientations"):
        IndexedPredictionSimilarity(orientations=3)
    with pytest.raises(InputError, match="unknown scope"):
        IndexedPredictionSimilarity(scope="world")
    with pytest.raises(InputError, match="bits"):
        IndexedPredictionSimilarity(bits=64)


def test_max_age_forgets_queries_older_than_that(classifier, patches):
    model = _defended(classifier, min_matches=1, max_age=8)
    rng = np.random.default_rng(10)
    query(model, _noisy(patches[:1], rng), "u")
    query(model, patches[30:40], "u")  # 10 later queries of the service
    assert not query(model, _noisy(patches[:1], rng), "u")["alarm"][0]
    assert query(model, _noisy(patches[:1], rng), "u")["alarm"][0]  # the previous one is young enough
