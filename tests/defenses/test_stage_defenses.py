import numpy as np
import pytest

from advkeras.assess.context import RunContext
from advkeras.assess.stage_defenses import settings, stage_defenses
from advkeras.models import evaluate_classifier, load_model


def test_stage_builds_evaluates_and_saves_the_configured_defenses(mnist_model, mnist_splits, tmp_path):
    train, val, test = mnist_splits
    cfg = {"max_eval": 30, "defenses": {
        "names": ["middle-ae", "encoder"], "eps": 0.1, "attack_steps": 2, "eps_grid": [0.05, 0.1, 0.2],
        "params": {"adversarial-training": {"epochs": 1}, "middle-ae": {"epochs": 3}, "encoder": {"epochs": 3},
                   "initial-ae": {"epochs": 1}}},
           "adaptive": {"square_iterations": 20, "lambdas": [1.0], "detector_steps": 5, "search_iterations": 10,
                        "max_images": 20}}
    assert settings(cfg)["params"]["adversarial-training"] == {"attacks": ["fgsm"], "epochs": 1}
    ctx = RunContext(cfg, tmp_path, 0, train.subset(np.arange(300)), val.subset(np.arange(100)), test, mnist_model)
    stage_defenses(ctx)
    m = ctx.metrics["defenses"]
    names = ["middle-ae", "encoder"]
    assert list(m["recovered"]) == names and set(ctx.defended) == set(names)
    assert m["n_eval"] == 30 and set(m["recovered"]["encoder"]) == {"fgsm", "bim", "pgd", "all"}
    rows = ctx.metrics["defense_summary"]
    assert [r["defense"] for r in rows] == names
    for r in rows:  # recomputed from the saved model and the stage's own attack runs
        assert r["clean_accuracy"] == pytest.approx(evaluate_classifier(ctx.defended[r["defense"]], test)["accuracy"])
        white = [v for k, v in m["attack_runs"][r["defense"]].items() if k.startswith("PGD") and "ce loss" in k and k.endswith("white-box")]
        assert len(white) == 1 and r["new_success"] == pytest.approx(white[0]["success"])
    for r in rows:  # the schema users script against (docs/metrics.md)
        assert isinstance(r["degenerate"], bool) and 0 <= r["balanced_accuracy"] <= 1
        runs = m["attack_runs"][r["defense"]]
        assert r["worst_case_success"] == max(v["success"] for v in runs.values()) >= max(r["new_success"],
                                                                                         r["transfer_success"])
        # non-adaptive: PGD and FGSM white-box, the original's PGD and 3 initial attacks transferred; adaptive:
        # PGD margin + restarts, Square, the other defense's white-box run, BPDA where there is an autoencoder
        assert sum(not v["adaptive"] for v in runs.values()) == 2 + 1 + 3
        kinds = sorted(v["kind"] for v in runs.values() if v["adaptive"])
        assert kinds == sorted(["white-box", "score-based", "transfer"] + (["bpda"] if r["defense"] == "middle-ae" else []))
        assert r["adaptive"] and r["attacks_run"] == len(runs)
        assert r["non_adaptive_worst_case_success"] == max(v["success"] for v in runs.values() if not v["adaptive"])
        assert r["worst_case_ci"][0] <= r["worst_case_success"] <= r["worst_case_ci"][1]
        assert set(r["sanity_checks"]["checks"]) == {"large_budget", "iterative_vs_single_step", "whitebox_vs_transfer"}
        assert sum(r["n_eval_per_class"].values()) == r["n_eval"] == 30
    assert m["eval_set"]["n"] == 30 and len(m["eval_set"]["per_class"]) == 10
    enc = [r for r in ctx.metrics["detector_summary"] if r["detector"] == "encoder disagreement"]
    adaptive = [r for r in enc if r.get("adaptive")]
    assert len(adaptive) == 1 and adaptive[0]["n_attacked"] > 0
    assert adaptive[0]["binary_evasion_k"] >= 0 and adaptive[0]["auc"] is None  # only the 5 % threshold was attacked
    assert all(r["adaptive_eps"] == 0.1 and r["adaptive_tpr_at_5"] == adaptive[0]["tpr_at_5"] for r in enc
               if not r.get("adaptive"))
    assert {f.split("/")[0] for f in ctx.figures} == {"defenses"}
    assert all((tmp_path / f["path"]).is_file() for f in ctx.figures.values())
    again = load_model(tmp_path / "defenses" / "encoder.keras")
    assert [l.name for l in again.layers[1:]] == ["cnn", "encoder", "dnn"]


def test_stage_can_be_switched_off(mnist_model, tmp_path):
    ctx = RunContext({"defenses": {"enabled": False}}, tmp_path, 0, model=mnist_model)
    stage_defenses(ctx)
    assert "defenses" not in ctx.metrics and not ctx.defended
