import numpy as np
import pytest

from advkeras.attacks import generate
from advkeras.evaluation.defense_figures import plot_new_adversarial_rates, plot_new_adversarials, plot_recovery
from advkeras.evaluation.robustness import (clean_accuracy, initial_adversarials, mean_std, new_adversarials,
                                            recovery_rates)
from advkeras.models import predict_logits


@pytest.fixture(scope="module")
def setting(mnist_model, mnist_splits, mnist_middle_ae, mnist_encoder_defense):
    test = mnist_splits[2]
    models = {"middle-ae": mnist_middle_ae.model, "encoder": mnist_encoder_defense.model}
    return mnist_model, models, test.x[:60], test.y[:60]


def test_recovery_counts_only_adversarials_that_fooled_the_original(setting):
    original, models, x, y = setting
    adv = initial_adversarials(original, x, y, ("fgsm", "bim"), eps=0.15, seed=0, progress=False)
    rates = recovery_rates({"original": original, **models}, adv)
    for name in ("fgsm", "bim"):
        res = adv[name]
        fooled = res.success & (res.pred_clean == y)
        row = rates["original"][name]
        assert (row["recovered"], row["n"], row["balanced"]) == (0.0, int(fooled.sum()), 0.0)  # by definition
        hit = predict_logits(models["encoder"], res.clipped[fooled]).argmax(1) == y[fooled]
        assert rates["encoder"][name]["recovered"] == pytest.approx(hit.mean())
        per_class = {str(c): pytest.approx(hit[y[fooled] == c].mean()) for c in np.unique(y[fooled])}
        assert {c: v["recovered"] for c, v in rates["encoder"][name]["per_class"].items()} == per_class
        assert rates["encoder"][name]["balanced"] == pytest.approx(np.mean([hit[y[fooled] == c].mean()
                                                                          for c in np.unique(y[fooled])]))
    n_all = sum(rates["encoder"][a]["n"] for a in ("fgsm", "bim"))
    assert rates["encoder"]["all"]["n"] == n_all > 0
    acc = clean_accuracy({"original": original, **models}, x, y)
    assert acc["original"] == pytest.approx((predict_logits(original, x).argmax(1) == y).mean())


def test_mean_std_over_seeds_keeps_the_structure():
    s = mean_std([{"a": {"x": 0.2}, "b": 1.0}, {"a": {"x": 0.4}, "b": 3.0}])
    assert s["a"]["x"]["mean"] == pytest.approx(0.3) and s["a"]["x"]["std"] == pytest.approx(0.1)
    assert s["b"] == {"mean": 2.0, "std": 1.0, "values": [1.0, 3.0]}


def test_new_adversarials_report_success_and_minimal_perturbation(setting, tmp_path):
    original, models, x, y = setting
    grid = (0.05, 0.1, 0.2, 0.3)
    pair = {"original": original, "encoder": models["encoder"]}
    rows, fixed = new_adversarials(pair, x[:30], y[:30], attack="fgsm", eps=0.1, eps_grid=grid, progress=False)
    for name, row in rows.items():
        ref = generate(pair[name], x[:30], y[:30], "fgsm", eps=0.1, backend="native", progress=False)
        assert row["success_rate"] == pytest.approx(ref.success_rate)
        assert row["median_min_linf"] in (*grid, np.inf)
        # FGSM at eps moves every pixel by at most eps, so L2 <= eps * sqrt(784).
        assert 0 < row["median_min_l2"] <= row["median_min_linf"] * 28 + 1e-5 or not np.isfinite(row["median_min_l2"])
    paths = [plot_new_adversarials(fixed, tmp_path / "fig10.png", n_samples=2),
             plot_new_adversarial_rates(rows, tmp_path / "rates.png")]
    table = {"eps": 0.1, "seeds": [0, 1], "summary": mean_std([
        {"recovered": {"encoder": {"fgsm": 0.5, "all": 0.5}}}, {"recovered": {"encoder": {"fgsm": 0.7, "all": 0.7}}}])}
    paths.append(plot_recovery(table, tmp_path / "table1.png"))
    assert all(p.is_file() and p.stat().st_size > 5000 for p in paths)


def test_lower_median_stays_on_the_grid_and_is_inf_only_when_most_resist():
    from advkeras.evaluation.robustness import _lower_median

    assert _lower_median(np.array([2, 4]) / 255) == 2 / 255  # not the midpoint 3/255, which is off the grid
    assert _lower_median(np.array([2 / 255, np.inf])) == 2 / 255  # exactly half resist: still finite
    assert _lower_median(np.array([2 / 255, np.inf, np.inf])) == np.inf
    assert np.isnan(_lower_median(np.array([])))


def test_defense_table_over_two_seeds_averages_its_per_seed_rows(mnist_model, mnist_splits):
    from advkeras.evaluation.robustness import defense_table

    train, val, test = mnist_splits
    table, models = defense_table(mnist_model, train.subset(np.arange(400)), val.subset(np.arange(100)),
                                  test.subset(np.arange(60)), defenses={"middle-ae": {"epochs": 3}},
                                  attacks=("fgsm",), eps=0.15, seeds=[0, 1], progress=False)
    assert sorted(models) == [0, 1] and models[0]["middle-ae"] is not models[1]["middle-ae"]
    rows = [s["recovered"]["middle-ae"]["fgsm"] for s in table["per_seed"]]
    cell = table["summary"]["recovered"]["middle-ae"]["fgsm"]
    assert cell["values"] == rows and cell["mean"] == pytest.approx(np.mean(rows))
    assert all(0 <= r <= 1 for r in rows) and table["per_seed"][0]["n_fooled"]["fgsm"] > 0
    # Each seed rebuilds the defense: the two middle autoencoders are trained from different starts.
    w0, w1 = (m["middle-ae"].get_layer("middle_ae").get_weights()[0] for m in models.values())
    assert not np.allclose(w0, w1)
