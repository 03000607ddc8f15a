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
    from advkeras.attacks import minimal_adversarials
    from advkeras.evaluation.robustness import _lower_median

    original, models, x, y = setting
    grid = (0.05, 0.1, 0.2, 0.3)
    pair = {"original": original, "encoder": models["encoder"]}
    rows, fixed = new_adversarials(pair, x[:30], y[:30], attack="fgsm", eps=0.1, eps_grid=grid, progress=False)
    for name, row in rows.items():
        model = pair[name]
        ref = generate(model, x[:30], y[:30], "fgsm", eps=0.1, backend="native", progress=False)
        assert row["success_rate"] == pytest.approx(ref.success_rate)
        # The row's medians are those of the per-image minimal adversarials (FGSM is deterministic).
        minimal = minimal_adversarials(model, x[:30], y[:30], "fgsm", eps_grid=grid, progress=False)
        correct = minimal.eps > 0
        assert row["n_correct"] == int((ref.pred_clean == y[:30]).sum()) == int(correct.sum())
        assert row["median_min_linf"] == _lower_median(minimal.eps[correct])
        assert row["median_min_l2"] == pytest.approx(float(np.median(minimal.l2[correct])))
        # Every image FGSM fooled at eps 0.1 (a grid value) has a minimal eps of at most 0.1, and every
        # reported minimal adversarial fools the model within its eps.
        assert (minimal.eps[fixed[name].fooled] <= 0.1).all()
        broken = np.flatnonzero(np.isfinite(minimal.eps) & correct)
        assert len(broken) and (predict_logits(model, minimal.x_adv[broken]).argmax(1) != y[:30][broken]).all()
        linf = np.abs(minimal.x_adv[broken] - x[:30][broken]).reshape(len(broken), -1).max(1)
        assert (linf <= minimal.eps[broken] + 1e-6).all()
    # FGSM breaks most of the original's digits within the grid (measured: 27 of its 28 correct ones, median
    # minimal eps 0.2, median L2 4.31; the encoder defense: 27 of 27, 0.2, 4.20), so its medians are finite and
    # on the grid; FGSM at eps moves every pixel by at most eps, so L2 <= eps * sqrt(784).
    row = rows["original"]
    assert row["broken_within_grid"] > 0.5 and row["median_min_linf"] in grid
    assert 0 < row["median_min_l2"] <= row["median_min_linf"] * 28 + 1e-5
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
    # Each per-seed row is what the seed's own adversarials and defended model give (FGSM is deterministic).
    x, y = test.x[:60], test.y[:60]
    for seed, row in zip((0, 1), table["per_seed"]):
        adv = initial_adversarials(mnist_model, x, y, ("fgsm",), eps=0.15, seed=seed, progress=False)
        rec = recovery_rates({"middle-ae": models[seed]["middle-ae"]}, adv)["middle-ae"]["fgsm"]
        assert row["n_fooled"]["fgsm"] == int(adv["fgsm"].fooled.sum()) == rec["n"] > 0
        assert row["recovered"]["middle-ae"]["fgsm"] == pytest.approx(rec["recovered"])
        assert row["recovered_balanced"]["middle-ae"]["fgsm"] == pytest.approx(rec["balanced"])
        assert row["clean_accuracy"] == pytest.approx(clean_accuracy({"original": mnist_model, **models[seed]}, x, y))
    def leaves(tree, path=()):
        if isinstance(tree, dict):
            for k, v in tree.items():
                yield from leaves(v, (*path, k))
        else:
            yield path, tree

    # The summary holds, for every number of the rows, its values over the seeds and their mean and
    # (population) std, recomputed here from the rows.
    n_leaves = 0
    for path, first in leaves(table["per_seed"][0]):
        values = [first] + [dict(leaves(s))[path] for s in table["per_seed"][1:]]
        cell = table["summary"]
        for k in path:
            cell = cell[k]
        assert cell["values"] == pytest.approx(values, nan_ok=True), path
        finite = np.asarray(values, float)[np.isfinite(values)]
        if len(finite):
            assert cell["mean"] == pytest.approx(finite.mean()) and cell["std"] == pytest.approx(finite.std()), path
        n_leaves += 1
    assert n_leaves >= 10
    rows = [s["recovered"]["middle-ae"]["fgsm"] for s in table["per_seed"]]
    cell = table["summary"]["recovered"]["middle-ae"]["fgsm"]
    # Two seeds: the mean is the midpoint, the population std half the gap (measured rows 0.20 and 0.08).
    assert cell["mean"] == pytest.approx((rows[0] + rows[1]) / 2)
    assert cell["std"] == pytest.approx(abs(rows[0] - rows[1]) / 2)
    # Each seed rebuilds the defense: the two middle autoencoders are trained from different starts.
    w0, w1 = (m["middle-ae"].get_layer("middle_ae").get_weights()[0] for m in models.values())
    assert not np.allclose(w0, w1)
