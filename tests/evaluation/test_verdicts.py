"""Verdicts a risk officer can trust: degenerate models, sanity checks, reached false-positive rates."""
import numpy as np
import pytest
import tensorflow as tf

from advkeras.evaluation.detection import detection_metrics, proportion_interval
from advkeras.evaluation.risk import best_defense, defense_risk, detection_risk, evasion_risks
from advkeras.evaluation.sanity import degeneracy, sanity_checks
from advkeras.models import evaluate_classifier
from advkeras.models.metrics import classification_metrics


def _always(cls: int, n_classes: int, shape) -> tf.keras.Model:
    """A model that answers `cls` for every image (a collapsed defense), logits out."""
    inp = tf.keras.Input(shape)
    flat = tf.keras.layers.Flatten()(inp)
    logits = tf.keras.layers.Dense(n_classes, kernel_initializer="zeros",
                                   bias_initializer=tf.keras.initializers.Constant(np.eye(n_classes)[cls] * 5))(flat)
    return tf.keras.Model(inp, logits)


def test_an_always_one_class_model_is_degenerate_where_accuracy_hides_it(idc_splits, idc_model):
    _, _, test = idc_splits
    skewed = test.subset(np.flatnonzero(test.y == 0))  # a one-class subset: constant "0" scores 100 %
    constant = _always(0, 2, test.input_shape)
    assert evaluate_classifier(constant, skewed)["accuracy"] == 1.0
    m = evaluate_classifier(constant, test)
    assert m["prediction_share"][test.class_names[0]] == 1.0
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    reasons = degeneracy(m, evaluate_classifier(idc_model, test))
    assert reasons and any("predictions" in r for r in reasons)
    assert degeneracy(evaluate_classifier(idc_model, test), evaluate_classifier(idc_model, test)) == []


def test_degeneracy_rules_at_their_edges():
    names = ("a", "b")
    y = np.array([0] * 60 + [1] * 40)
    fine = classification_metrics(y, y, names)
    assert fine["balanced_accuracy"] == 1.0 and degeneracy(fine, fine) == []
    mostly_a = classification_metrics(y, np.r_[np.zeros(90, int), np.ones(10, int)], names)  # 90 % "a", 60 % labels
    assert any("takes 90%" in r for r in degeneracy(mostly_a))
    majority = classification_metrics(np.r_[np.zeros(95, int), np.ones(5, int)], np.zeros(100, int), names)
    assert not any("takes" in r for r in degeneracy(majority))  # a 95 % class may take 100 % of the answers ...
    assert degeneracy(majority, {"balanced_accuracy": 0.9})  # ... but not lose 0.4 of balanced accuracy


def test_a_degenerate_defense_is_never_chosen_as_best():
    rows = [{"defense": "initial-ae", "degenerate": True, "degenerate_reasons": ["x"], "worst_case_success": 0.0,
             "balanced_accuracy": 0.5, "recovered": 1.0},
            {"defense": "adversarial-training", "degenerate": False, "worst_case_success": 0.3,
             "balanced_accuracy": 0.8, "recovered": 0.6, "eps": 4 / 255, "n_eval": 96}]
    assert best_defense(rows)["defense"] == "adversarial-training"
    verdict = defense_risk(rows)[0]
    assert verdict["defense"] == "adversarial-training" and verdict["level"] == "medium"
    assert "Excluded as degenerate: initial-ae" in verdict["reason"]
    assert defense_risk(rows[:1])[0]["level"] == "high"  # nothing usable is no defense


def test_failed_sanity_checks_forbid_a_low_level():
    attacks = [{"attack": "pgd", "eps": 4 / 255, "success_rate_on_correct": 0.05, "n": 10, "clean_accuracy": 1.0}]
    assert evasion_risks(attacks, {"passed": True, "failed": [], "checks": {}})[0]["level"] == "low"
    assert evasion_risks(attacks)[0]["level"] == "medium"  # not run is not passed
    masked = {"passed": False, "failed": ["large_budget"]}
    row = evasion_risks(attacks, masked)[0]
    assert row["level"] == "medium" and "gradient masking" in row["reason"]
    defended = [{"defense": "d", "degenerate": False, "worst_case_success": 0.0, "gradient_masking_suspected": True,
                 "sanity_checks": masked}]
    assert defense_risk(defended)[0]["level"] == "medium"
    passed = [{**defended[0], "gradient_masking_suspected": False, "sanity_checks": {"passed": True, "failed": []}}]
    assert defense_risk(passed)[0]["level"] == "low"


def test_a_defense_that_misses_the_fidelity_target_is_chosen_last_and_said_so():
    keeps = {"defense": "a", "degenerate": False, "worst_case_success": 0.3, "keeps_val_balanced_accuracy": True,
             "worst_case_ci": [0.2, 0.4], "original_worst_case_success": 0.35}
    drifts = {"defense": "b", "degenerate": False, "worst_case_success": 0.1, "keeps_val_balanced_accuracy": False}
    assert best_defense([keeps, drifts])["defense"] == "a"
    row = defense_risk([keeps, drifts])[0]
    assert "no defense is measurably better than none" in row["reason"]  # 0.35 lies in [0.2, 0.4]
    assert "fidelity target" in defense_risk([drifts])[0]["reason"]


def test_each_detector_is_judged_on_the_attack_it_misses_most():
    rows = [{"detector": "d", "attack": "fgsm@0.0157", "eps": 4 / 255, "tpr_at_5": 0.95, "n_adv": 50},
            {"detector": "d", "attack": "pgd@0.0157", "eps": 4 / 255, "tpr_at_5": 0.30, "n_adv": 50},
            {"detector": "d", "attack": "pgd@0.0314", "eps": 8 / 255, "tpr_at_5": 0.99, "n_adv": 50},
            {"detector": "e", "attack": "pgd@0.0157", "eps": 4 / 255, "tpr_at_5": 0.60, "n_adv": 5}]
    verdict = detection_risk(rows)[0]
    assert verdict["detector"] == "e" and verdict["value"] == 0.60  # d's worst at 4/255 is 0.30
    assert "only 5 adversarials" in verdict["reason"]


def test_sanity_checks_catch_a_model_whose_answer_cannot_move(idc_splits, idc_model):
    from advkeras.attacks import generate

    _, _, test = idc_splits
    x, y = test.x[::8][:24], test.y[::8][:24]
    constant = _always(1, 2, test.input_shape)
    y = np.full(len(y), 1)
    wb = generate(constant, x, y, "pgd", eps=4 / 255, backend="native", steps=5, progress=False)
    out = sanity_checks(constant, x, y, whitebox=wb, steps=5)
    assert out["gradient_masking_suspected"] and "large_budget" in out["failed"]
    wb = generate(idc_model, x, test.y[::8][:24], "pgd", eps=4 / 255, backend="native", steps=10, progress=False)
    ok = sanity_checks(idc_model, x, test.y[::8][:24], whitebox=wb, steps=20)
    assert ok["checks"]["large_budget"]["value"] >= 0.99 and ok["checks"]["iterative_vs_single_step"]["passed"]


def test_a_reached_fpr_above_target_is_reported_as_such():
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, 40)              # too few clean images for a 5 % threshold
    clean_test = rng.normal(0.8, 1, 300)      # test patients score higher than calibration ones
    adv = rng.normal(3, 1, 100)
    m = detection_metrics(clean_test, adv, calibration_scores=calib)
    five = m["at_fpr"]["0.05"]
    assert not five["calibration_enough"] and five["calibration_needed"] == 200
    assert five["fpr"] > 0.05 and five["fpr_ci"][0] > 0.05  # missed, beyond its interval
    from advkeras.evaluation.detection import detector_row

    row = detector_row("d", "pgd@0.0157", m)
    verdict = detection_risk([row])[0]
    assert f"{five['fpr']:.1%}" in verdict["reason"] and "missed its 5 % target" in verdict["reason"]
    assert verdict["level"] != "low"


def test_proportion_interval_is_exact_binomial():
    lo, hi = proportion_interval(0, 20)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 20))
    lo, hi = proportion_interval(5, 100)
    assert lo < 0.05 < hi and hi - lo > 0.05


def test_detection_verdict_prefers_a_detector_whose_threshold_held():
    missed = {"detector": "loose", "attack": "pgd", "tpr_at_5": 0.95, "fpr_reached": 0.17,
              "fpr_reached_ci": [0.12, 0.22], "calibration_enough": True, "n_adv": 50, "n_clean": 200}
    held = {"detector": "honest", "attack": "pgd", "tpr_at_5": 0.6, "fpr_reached": 0.05,
            "fpr_reached_ci": [0.03, 0.09], "calibration_enough": True, "n_adv": 50, "n_clean": 200}
    assert detection_risk([missed, held])[0]["detector"] == "honest"
    only = detection_risk([missed])[0]
    assert only["detector"] == "loose" and only["level"] == "medium" and "17.0%" in only["reason"]


def test_an_adaptive_attack_that_gets_past_a_detector_decides_its_verdict():
    plain = {"detector": "d", "attack": "pgd@0.0157", "eps": 4 / 255, "tpr_at_5": 0.95, "n_adv": 60,
             "fpr_reached": 0.05, "fpr_reached_ci": [0.02, 0.09], "calibration_enough": True, "n_clean": 200}
    alone = detection_risk([plain])[0]
    assert alone["level"] == "medium" and "Not adaptive" in alone["reason"]  # an upper bound cannot be low
    strong = {**plain, "attack": "adaptive@0.0157", "tpr_at_5": 0.97, "adaptive": True, "evasion_success": 0.01,
              "evasion_ci": [0.0, 0.05], "n_attacked": 80}
    assert detection_risk([plain, strong])[0]["level"] == "low"
    # a detector attacked adaptively outranks one that scores higher only because nobody attacked it
    other = {**plain, "detector": "unattacked", "tpr_at_5": 0.99}
    assert detection_risk([plain, strong, other])[0]["detector"] == "d"
    adaptive = {**plain, "attack": "adaptive (detector-aware PGD)@0.0157", "tpr_at_5": 0.40, "adaptive": True,
                "evasion_success": 0.3, "evasion_ci": [0.2, 0.42], "n_attacked": 80}
    verdict = detection_risk([plain, adaptive])[0]
    assert verdict["level"] == "high" and verdict["value"] == 0.40 and verdict["adaptive"]
    assert "knows the detector" in verdict["reason"] and "30% of the 80" in verdict["reason"]
    # an adaptive attack detected more often than the plain one leaves the plain row as evidence, and says so
    weaker = {**adaptive, "tpr_at_5": 0.99}
    verdict = detection_risk([plain, weaker])[0]
    assert verdict["value"] == 0.95 and not verdict["adaptive"] and "detected more often" in verdict["reason"]


def test_the_defense_verdict_says_whether_the_adaptive_battery_ran():
    row = {"defense": "d", "worst_case_success": 0.1, "worst_case_attack": "PGD BPDA", "worst_case_ci": [0.05, 0.2],
           "worst_case_n": 90, "eps": 4 / 255, "attacks_run": 12, "adaptive": True,
           "sanity_checks": {"failed": [], "checks": {}}}
    assert "12 attack runs (adaptive battery run)" in defense_risk([row])[0]["reason"]
    assert "lower bound" in defense_risk([{**row, "adaptive": False}])[0]["reason"]


def test_attack_campaign_verdict_grades_on_the_attacker_caught_least():
    from advkeras.evaluation.risk import process_risk

    pooled = {"detected_share": 0.98, "benign_flagged_share": 0.0, "processes": 400, "benign_users": 300}
    (plain,) = process_risk(pooled)
    assert plain["level"] == "medium" and "not adaptive" in plain["reason"]
    worst = {**pooled, "worst_attacker": "bim, new id per query", "worst_detected_share": 0.5, "worst_processes": 50,
             "adaptive_attackers": ["bim, flush 40", "bim, new id per query"], "worst_workload": "rescan",
             "worst_workload_flagged_share": 0.03, "worst_workload_users": 100}
    (row,) = process_risk(worst)
    assert row["level"] == "high" and row["value"] == 0.5  # the pooled 98 % hides an attacker caught half the time
    assert "'bim, new id per query'" in row["reason"] and "flush 40" in row["reason"] and "'rescan'" in row["reason"]
    (fine,) = process_risk({**worst, "worst_detected_share": 1.0, "worst_processes": 400})
    assert fine["level"] == "medium"  # every attacker caught, but 3 % of the rescan workload flagged
