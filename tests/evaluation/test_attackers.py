"""Attacker strategies against prediction similarity, and benign workloads with near-duplicates."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advkeras.defenses.prediction_similarity import build_defended_model, canonical_views
from advkeras.errors import InputError
from advkeras.evaluation.attackers import BLINDING, Strategy, attacker_model, blind
from advkeras.evaluation.workloads import WORKLOADS, benign_workload


@pytest.fixture(scope="module")
def classifier():
    return tf.keras.Sequential([tf.keras.Input((50, 50, 3)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])


@pytest.fixture(scope="module")
def patches(idc_splits):
    return idc_splits[2].x[:200]


def _run(model, x, steps, seed=0):
    """An attack stand-in: `steps` calls, each a fresh noisy copy (8/255) of the processes' images."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        model(np.clip(x + rng.uniform(-8 / 255, 8 / 255, x.shape), 0, 1).astype(np.float32))
    return model.get_layer("as_user").process_stats()


def _index(classifier, **kw):
    return build_defended_model(classifier, threshold=0.05, global_threshold=0.05, capacity=4096, **kw)


def _ring(classifier):
    return build_defended_model(classifier, store="ring", threshold=2e-4, history=32, n_slots=64)


def test_strategy_specs_are_checked():
    assert Strategy.from_spec({"blind": "noise", "flush": 3}) == Strategy(flush=3, blind=("noise",))
    with pytest.raises(InputError, match="unknown strategy key"):
        Strategy.from_spec({"flood": 3})
    with pytest.raises(InputError, match="unknown blinding"):
        Strategy.from_spec({"blind": ["blur"]})
    with pytest.raises(InputError, match="cover images"):
        attacker_model(build_defended_model(tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                                                  tf.keras.layers.Dense(2)])), ["a"], Strategy(flush=2))


def test_blinding_changes_every_query_but_keeps_it_an_image(patches):
    x = tf.constant(patches[:4])
    for name in BLINDING:
        y = blind(x, (name,), tf.ones([4]), seed=1).numpy()
        assert y.shape == patches[:4].shape and y.min() >= 0 and y.max() <= 1
        assert np.abs(y - patches[:4]).max() > 1 / 255, name  # it did something
    twice = blind(x, ("noise",), 3 * tf.ones([4]), seed=1).numpy() - patches[:4]
    assert np.abs(twice).max() > 32 / 255  # strength scales the amplitude


def test_cover_queries_flush_the_ring_but_not_the_index(classifier, patches):
    stats = {}
    for name, defended in (("ring", _ring(classifier)), ("index", _index(classifier))):
        model = attacker_model(defended, ["p0", "p1"], Strategy(flush=40), cover=patches[10:], seed=0)
        stats[name] = _run(model, patches[:2], steps=6)
    assert (stats["ring"]["cover"] == 240).all() and (stats["ring"]["queries"] == 6).all()
    assert (stats["ring"]["alarms"] == 0).all()  # 40 cover queries per attack query > history 32
    assert (stats["index"]["alarms"] >= 3).all() and (stats["index"]["first_alarm"] <= 4).all()


def test_a_new_id_per_query_is_caught_only_across_users(classifier, patches):
    user_only = attacker_model(_index(classifier, scope="user"), ["p"], Strategy(new_id_every=1))
    both = attacker_model(_index(classifier, global_min_matches=4), ["p"], Strategy(new_id_every=1))
    a, b = _run(user_only, patches[:1], 8), _run(both, patches[:1], 8)
    assert a["ids"][0] == 8 and a["alarms"][0] == 0
    assert b["alarms"][0] >= 3 and b["first_alarm"][0] == 5  # the 5th query has 4 earlier near-copies


def test_adaptive_attacker_escalates_after_each_alarm(classifier, patches):
    model = attacker_model(_index(classifier, min_matches=1), ["p"], Strategy(adaptive=True), seed=3)
    stats = _run(model, patches[:1], 6)
    layer = model.get_layer("as_user")
    assert int(layer.level.numpy()[0]) == stats["alarms"][0] >= 1
    assert stats["ids"][0] == 1 + stats["alarms"][0]  # a new id after every alarm


def test_workloads_hold_the_near_duplicates_they_promise(idc_splits):
    test = idc_splits[2]
    resend = benign_workload(test, "resend", 4, 12, seed=0)
    for x in resend.values():
        flat = x.reshape(len(x), -1)
        _, counts = np.unique(flat, axis=0, return_counts=True)
        assert len(x) == 12 and counts.max() <= 3 and (counts > 1).any()  # re-opened, each at most twice more
    rescan = next(iter(benign_workload(test, "rescan", 1, 12, seed=0).values()))
    v = canonical_views(rescan).numpy()[:, 0]
    d = 1 - v @ v.T + 2 * np.eye(12)
    assert 0 < d.min() < 0.02  # a re-scan: the same tissue up to colour and noise, never an identical image
    assert len(np.unique(rescan.reshape(12, -1), axis=0)) == 12
    crops = next(iter(benign_workload(test, "crops", 1, 6, seed=0).values()))
    np.testing.assert_array_equal(crops[1][:, :40], crops[0][:, 10:])  # windows 10 px apart overlap
    shared = benign_workload(test, "shared", 10, 5, seed=0)
    s = list(shared.values())
    np.testing.assert_array_equal(s[0], s[1])  # colleagues on one case send the same patches
    with pytest.raises(InputError, match="unknown workload"):
        benign_workload(test, "binge", 2, 2)
    assert set(WORKLOADS) == {"browse", "resend", "rescan", "crops", "shared"}


def test_simulation_reports_strategies_and_workloads(idc_splits, classifier):
    from advkeras.evaluation.traffic import evaluate_prediction_similarity
    from advkeras.models import build_classifier

    train, val, test = idc_splits
    clf = build_classifier("lenet", train.input_shape, 2, seed=0)
    attacks = [{"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "flush", "strategy": {"flush": 40}}]
    out = evaluate_prediction_similarity(clf, val, test, n_benign=3, queries_per_user=6, attacks=attacks,
                                         processes=2, actions=("flag",), workloads=("browse", "rescan"), seed=0,
                                         progress=False)
    run = out["runs"]["flag"]
    assert set(run["benign"]["workloads"]) == {"browse", "rescan"}
    assert sum(w["users"] for w in run["benign"]["workloads"].values()) == run["benign"]["users"] == 6
    row = run["attacks"][0]
    assert row["detected"] == 2 and row["median_cover_queries"] == 40 * np.median(row["queries"])
    assert out["calibration"]["global_threshold"] is not None
