"""Query-traffic simulation: benign sessions, attack processes through the defended model, flip vs flag."""
from __future__ import annotations

import numpy as np
import pytest

from advkeras.evaluation.traffic import benign_sessions, evaluate_prediction_similarity, slide_positions


def test_benign_sessions_walk_one_slide_without_repeats(idc_splits):
    test = idc_splits[2]
    pos = slide_positions(test)
    assert pos is not None and pos.shape == (len(test), 2)
    sessions = benign_sessions(test, 6, 10, neighbour_prob=1.0, seed=0)
    assert len(sessions) == 6
    for idx in sessions.values():
        assert len(set(idx.tolist())) == 10 and len(np.unique(test.groups[idx])) == 1
        steps = np.abs(np.diff(pos[idx], axis=0)).max(axis=1)
        assert np.median(steps) <= 100  # mostly neighbouring patches (50 px apart on the slide)


def test_simulation_detects_attack_processes_and_flip_misleads(idc_splits):
    from advkeras.models import build_classifier

    train, val, test = idc_splits
    clf = build_classifier("lenet", train.input_shape, 2, seed=0)  # untrained: the defense needs no accuracy
    attacks = [{"name": "bim", "backend": "foolbox", "eps": 8 / 255},
               {"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "bim+jitter",
                "jitter": {"noise": 16 / 255, "max_shift": 2}}]
    out = evaluate_prediction_similarity(clf, val, test, n_benign=6, queries_per_user=5, attacks=attacks,
                                         processes=2, seed=0, progress=False)
    assert out["calibration"]["threshold"] > 0 and out["calibration"]["n_users"] == 6
    for action in ("flag", "flip"):
        run = out["runs"][action]
        assert run["benign"]["queries"] == 30
        assert run["queries_total"] >= 30 + sum(sum(r["queries"]) for r in run["attacks"])
        for row in run["attacks"]:
            assert row["processes"] == 2 and row["detected"] == 2  # every BIM step repeats the image
            assert 2 <= row["median_queries_to_first_alarm"] <= 10
    flag, flip = out["runs"]["flag"]["attacks"][0], out["runs"]["flip"]["attacks"][0]
    # with flip, the attacker is told its adversarial works while it does not fool the real model
    assert flip["success_true"] <= flag["success_true"]
    assert flip["success_seen_by_attacker"] >= flip["success_true"]
    assert out["summary"]["flag"]["processes"] == 4


def test_a_misspelt_attack_is_an_error_not_zero_processes(idc_splits):
    from advkeras.errors import AdvKerasError
    from advkeras.evaluation.traffic import foolbox_gave_up
    from advkeras.models import build_classifier

    train, val, test = idc_splits
    clf = build_classifier("lenet", train.input_shape, 2, seed=0)
    for bad in ({"name": "bimm", "backend": "foolbox", "eps": 8 / 255},
                {"name": "bim", "backend": "native", "eps": 8 / 255, "params": {"stepz": 3}}):
        with pytest.raises((AdvKerasError, TypeError)):
            evaluate_prediction_similarity(clf, val, test, n_benign=2, queries_per_user=2, attacks=[bad],
                                           processes=1, seed=0, progress=False)
    assert foolbox_gave_up(ValueError("init_attack failed for 3 of 4 inputs"))
    assert not foolbox_gave_up(ValueError("something else")) and not foolbox_gave_up(AssertionError("ours"))


def test_a_collapsed_model_gives_decision_based_attackers_no_start_not_a_crash(idc_splits):
    """A model answering one class for everything (e.g. one training epoch on a skewed set) leaves a targeted
    Boundary attacker no starting image: recorded as an error with no adversarial, as when foolbox gives up."""
    import tensorflow as tf

    train, val, test = idc_splits
    clf = tf.keras.Sequential([tf.keras.Input(train.input_shape), tf.keras.layers.Flatten(),
                               tf.keras.layers.Dense(2, kernel_initializer="zeros",
                                                     bias_initializer=tf.keras.initializers.Constant([-5.0, 5.0]))])
    spec = {"name": "boundary", "targeted": True, "params": {"steps": 2}}
    out = evaluate_prediction_similarity(clf, val, test, n_benign=2, queries_per_user=2, attacks=[spec],
                                         processes=2, seed=0, progress=False, actions=("flag",))
    row = out["runs"]["flag"]["attacks"][0]
    assert "class 0" in row["error"] and row["success_true"] == 0.0 and row["success_seen_by_attacker"] == 0.0
