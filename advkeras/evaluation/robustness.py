"""Robustness of defended models: the defense paper's Table 1 and the new-adversarial evaluation.

Table 1: adversarials made on the original model ("initial adversarials", FGSM/BIM/PGD) that fool
it are fed to each defended model; the share it classifies correctly again ("recovered") is the
defense's score, given as mean and std over seeds, next to each model's clean accuracy.
New adversarials: each defended model is attacked afresh; success rate at a fixed eps and the
median minimal perturbation (Linf from `minimal_eps`, and the L2 of those minimal adversarials).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks import DEFAULT_EPS_GRID, AttackResult, generate, minimal_adversarials
from advkeras.attacks.base import predict_labels
from advkeras.data.dataset import Dataset
from advkeras.errors import InputError


def initial_adversarials(model: tf.keras.Model, x: np.ndarray, y: np.ndarray,
                         attacks: Sequence[str] = ("fgsm", "bim", "pgd"), *, eps: float, backend: str = "native",
                         seed: int = 0, attack_params: Mapping[str, dict] | None = None,
                         progress: bool = True) -> dict[str, AttackResult]:
    """Adversarials of (x, y) made on the original `model`, one AttackResult per attack name."""
    attack_params = attack_params or {}
    return {name: generate(model, x, y, name, eps=eps, backend=backend, seed=seed, progress=progress,
                           **attack_params.get(name, {})) for name in attacks}


def recovery_rates(defended: Mapping[str, tf.keras.Model],
                   adversarials: Mapping[str, AttackResult]) -> dict[str, dict[str, dict]]:
    """Per defense and attack: share of the initial adversarials that fooled the original model
    (on images it classified correctly) which the defended model classifies correctly again.

    Each entry also has the share per true class ("per_class") and their mean over the classes with
    adversarials ("balanced"): a model that answers one class always "recovers" every adversarial of that
    class and none of the other, which the pooled share hides when the classes are unequal. Adds a pooled
    "all" entry per defense (all attacks' adversarials together)."""
    out: dict[str, dict[str, dict]] = {}
    for dname, model in defended.items():
        rows: dict[str, dict] = {}
        ys, oks = [], []
        for aname, res in adversarials.items():
            fooled = res.fooled
            ok = (predict_labels(model, res.clipped[fooled]) == res.y[fooled]) if fooled.any() else np.zeros(0, bool)
            rows[aname] = _recovered(res.y[fooled], ok)
            ys.append(res.y[fooled])
            oks.append(ok)
        rows["all"] = _recovered(np.concatenate(ys) if ys else np.zeros(0, int),
                                 np.concatenate(oks) if oks else np.zeros(0, bool))
        out[dname] = rows
    return out


def _recovered(y: np.ndarray, ok: np.ndarray) -> dict:
    per_class = {str(c): {"recovered": float(ok[y == c].mean()), "n": int((y == c).sum())} for c in np.unique(y)}
    return {"recovered": float(ok.mean()) if len(ok) else float("nan"), "n": int(len(ok)), "per_class": per_class,
            "balanced": float(np.mean([v["recovered"] for v in per_class.values()])) if per_class else float("nan")}


def clean_accuracy(models: Mapping[str, tf.keras.Model], x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of each model on clean images."""
    return {name: float((predict_labels(m, x) == y).mean()) for name, m in models.items()}


def mean_std(per_seed: Sequence[Any]) -> Any:
    """Nested dicts of numbers (one per seed) -> the same structure with {"mean", "std", "values"} leaves."""
    first = per_seed[0]
    if isinstance(first, Mapping):
        return {k: mean_std([d[k] for d in per_seed]) for k in first}
    # Population std (ddof=0) over the seeds, as np.std; NaN seeds (nothing to measure) are skipped.
    values = np.asarray(per_seed, dtype=np.float64)
    if not np.isfinite(values).any():
        return {"mean": float("nan"), "std": float("nan"), "values": values.tolist()}
    return {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "values": values.tolist()}


def new_adversarials(models: Mapping[str, tf.keras.Model], x: np.ndarray, y: np.ndarray, *, attack: str = "pgd",
                     eps: float, eps_grid: Sequence[float] = DEFAULT_EPS_GRID, backend: str = "native",
                     seed: int = 0, progress: bool = True, **params) -> tuple[dict[str, dict], dict[str, AttackResult]]:
    """Attack every model afresh. Returns (rows, results at the fixed eps).

    Per model: success rate at `eps` (overall and on correctly classified images), and over the
    images the model classifies correctly, the (lower) median minimal Linf eps in `eps_grid` (inf when
    more than half resist the whole grid) and the median L2 norm of the adversarials found there.
    """
    rows, fixed = {}, {}
    for name, model in tqdm(models.items(), desc=f"new adversarials ({attack})", unit="model", disable=not progress):
        res = generate(model, x, y, attack, eps=eps, backend=backend, seed=seed, progress=False, **params)
        fixed[name] = res
        minimal = minimal_adversarials(model, x, y, attack, eps_grid=eps_grid, backend=backend, seed=seed,
                                       progress=False, **params)
        m, l2 = minimal.eps, minimal.l2
        correct = m > 0
        rows[name] = {"success_rate": res.success_rate, "success_rate_on_correct": res.success_rate_on_correct,
                      "n_correct": int(correct.sum()),
                      "median_min_linf": _lower_median(m[correct]),
                      "median_min_l2": float(np.median(l2[correct])) if correct.any() else float("nan"),
                      "broken_within_grid": float(np.isfinite(m[correct]).mean()) if correct.any() else float("nan")}
    return rows, fixed


def _lower_median(values: np.ndarray) -> float:
    """The lower median: always one of the values (so a grid eps, never a midpoint between two), and
    inf only when more than half are inf."""
    if not len(values):
        return float("nan")
    return float(np.sort(values)[(len(values) - 1) // 2])


def defense_table(model: tf.keras.Model, train: Dataset, val: Dataset | None, test: Dataset, *,
                  defenses: Mapping[str, dict], attacks: Sequence[str] = ("fgsm", "bim", "pgd"), eps: float,
                  seeds: Sequence[int] = (0, 1, 2), backend: str = "native",
                  attack_params: Mapping[str, dict] | None = None,
                  progress: bool = True) -> tuple[dict, dict[int, dict[str, tf.keras.Model]]]:
    """Table 1 over `seeds`: defenses built with each seed, initial adversarials made with each seed.

    Per seed and model: recovery pooled (the paper's definition) and balanced over classes, balanced accuracy
    on `test` and whether the model is degenerate (1.0) or not (0.0); the summary's mean of "degenerate" is
    the share of seeds in which it was.

    `defenses` maps a defense name (see `advkeras.defenses.DEFENSES`) to its builder parameters.
    Returns (table, defended models per seed); the table holds per-seed values and mean/std.
    """
    from advkeras.defenses.build import build_defenses  # evaluation sits above defenses
    from advkeras.evaluation.sanity import degeneracy
    from advkeras.models import evaluate_classifier

    if not seeds or not defenses:
        raise InputError("defense_table needs at least one seed and one defense.")
    per_seed, models_by_seed = [], {}
    for seed in tqdm(seeds, desc="Table 1 seeds", unit="seed", disable=not progress):
        built = build_defenses(defenses, model, train, val, seed=seed)
        models_by_seed[seed] = {n: r.model for n, r in built.items()}
        adv = initial_adversarials(model, test.x, test.y, attacks, eps=eps, backend=backend, seed=seed,
                                   attack_params=attack_params, progress=progress)
        rec = recovery_rates(models_by_seed[seed], adv)
        quality = {n: evaluate_classifier(m, test) for n, m in {"original": model, **models_by_seed[seed]}.items()}
        per_seed.append({"recovered": {d: {a: r["recovered"] for a, r in rows.items()} for d, rows in rec.items()},
                         "recovered_balanced": {d: {a: r["balanced"] for a, r in rows.items()} for d, rows in rec.items()},
                         "balanced_accuracy": {n: q["balanced_accuracy"] for n, q in quality.items()},
                         "degenerate": {n: float(bool(degeneracy(q, quality["original"]))) for n, q in quality.items()},
                         "n_fooled": {a: int(r.fooled.sum()) for a, r in adv.items()},
                         "attack_success_on_correct": {a: r.success_rate_on_correct for a, r in adv.items()},
                         "clean_accuracy": clean_accuracy({"original": model, **models_by_seed[seed]},
                                                          test.x, test.y)})
    table = {"seeds": list(seeds), "eps": eps, "attacks": list(attacks), "backend": backend,
             "defenses": {n: {k: v for k, v in p.items() if k != "middle"} for n, p in defenses.items()},
             "per_seed": per_seed, "summary": mean_std(per_seed)}
    return table, models_by_seed
