"""Assessment stage: the relevant-neuron detector (mu-Lasso neuron sets + random forest).

For every attack of the run the same attack is made on clean validation images (the detector's
fitting set); the detector is fitted there and tested on the run's held-out clean images and their
successful adversarials, which it has never seen.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from advkeras.adaptive import calibrated_target
from advkeras.adaptive.surrogates import forest_surrogate
from advkeras.assess.adaptive import detector_attack_row
from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.detectors.relevant_neurons import NeuronDescriptors, RelevantNeuronDetector, RelevantNeuronSets
from advkeras.detectors.relevant_neurons.experiment import AttackSpec, attack_part
from advkeras.detectors.relevant_neurons.views import plot_centroid_kde, plot_relevant_gradcam
from advkeras.errors import DataError
from advkeras.data.sampling import stratified_subset
from advkeras.evaluation.detection import binary_detection_metrics, detection_metrics, detector_row
from advkeras.evaluation.risk import verdict_eps

log = logging.getLogger(__name__)


def stage_relevant_neurons(ctx: RunContext) -> None:
    """Fit on attacked validation images, test on the run's held-out adversarials; one row per attack."""
    cfg = section(ctx.config, "relevant_neurons")
    if not cfg["enabled"] or not ctx.adversarials:
        return
    start = time.perf_counter()
    nd = NeuronDescriptors(ctx.model, append_prediction=True).fit()
    fit_part = stratified_subset(ctx.val, int(cfg["max_fit"]), seed=ctx.seed).in_memory()
    n_classes = int(ctx.model.output_shape[-1])
    results, rows, fitted = {}, [], {}
    for key, res in ctx.adversarials.items():
        ok = res.correct
        adv = res.clipped[res.fooled]
        if len(adv) < 2:
            log.info("relevant neurons: %s has %d successful adversarials; not scored", key, len(adv))
            continue
        spec = AttackSpec(res.attack, res.eps, res.target is not None, res.backend, dict(res.params))
        try:
            fit = attack_part(ctx.model, fit_part, spec, ctx.seed)
        except DataError as exc:
            log.info("relevant neurons: %s", exc)
            continue
        fc, fa = nd.transform(fit.clean), nd.transform(fit.adv)
        sets = RelevantNeuronSets(cfg["mu"], n_classes=n_classes).fit(fc[:, :-1], fc[:, -1].astype(int),
                                                                      fa[:, :-1], fa[:, -1].astype(int))
        det = RelevantNeuronDetector(neuron_set=cfg["neuron_set"], use_label=bool(cfg["with_label"]),
                                     n_estimators=int(cfg["n_estimators"]), sets=sets, random_state=ctx.seed)
        det.fit(np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))])
        tc, ta = nd.transform(res.x[ok]), nd.transform(adv)
        m = detection_metrics(det.decision_function(tc), det.decision_function(ta),
                              calibration_scores=det.oob_clean_scores_)
        fitted[key] = (res, det, np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))], m)
        vote = binary_detection_metrics(det.predict(tc).astype(bool), det.predict(ta).astype(bool))
        summary = sets.summary()
        results[key] = {"n_fit": [len(fc), len(fa)], "forest_vote": vote, "n_features": int(len(det.columns_)),
                        "neuron_sets": {k: {f: v[f] for f in ("mean_per_class", "pct_per_class", "union")}
                                        for k, v in summary["sets"].items()},
                        "solver": summary["solver"], **m}
        rows.append(detector_row(f"relevant neurons (mu={cfg['mu']:g}, {cfg['neuron_set']})", key, m, eps=res.eps))
        if cfg["figure"] and not any(f.startswith("relevant_neurons/") for f in ctx.figures):
            tag = key.replace("@", "_eps").replace(".", "p")
            means = plot_centroid_kde(fc[:, :-1], fc[:, -1].astype(int), tc[:, :-1], tc[:, -1].astype(int),
                                    ta[:, :-1], ta[:, -1].astype(int), sets.mask("clean"),
                                    ctx.figure_path("relevant_neurons", f"kde_{tag}.png"), seed=ctx.seed,
                                    title=f"{key}: distance to the predicted class's centroid")
            ctx.add_figure("relevant_neurons", f"kde_{tag}", ctx.figure_path("relevant_neurons", f"kde_{tag}.png"),
                           f"Distances to class centroids over all, relevant (mu={cfg['mu']:g}) and random "
                           f"neurons, held-out clean vs {key}; mean over relevant neurons "
                           f"{means['relevant neurons']['clean_mean']:.3f} clean vs "
                           f"{means['relevant neurons']['adv_mean']:.3f} adversarial")
            png = plot_relevant_gradcam(ctx.model, nd, sets, res,
                                        ctx.figure_path("relevant_neurons", f"gradcam_{tag}.png"), n=3)
            if png is not None:
                ctx.add_figure("relevant_neurons", f"gradcam_{tag}", png, f"GradCAM (tf-keras-vis) of the strongest "
                               f"relevant neuron and of the relevant set of each image's class, clean vs {key}")
        log.info("relevant neurons on %s: AUC %.3f, detection at 5%% FPR %.3f", key, m["auc"],
                 m["at_fpr"]["0.05"]["tpr"])
    adaptive = _adaptive(ctx, nd, fitted, rows, f"relevant neurons (mu={cfg['mu']:g}, {cfg['neuron_set']})")
    ctx.metrics["relevant_neurons"] = {"settings": cfg, "layers": nd.layers_, "n_neurons": nd.n_neurons_,
                                       "attacks": results, "adaptive": adaptive, "seconds": time.perf_counter() - start}
    ctx.metrics.setdefault("detector_summary", []).extend(rows)


def _adaptive(ctx: RunContext, nd: NeuronDescriptors, fitted: dict, rows: list[dict], name: str) -> dict | None:
    """Attack, at the verdict's eps, the forest fitted on that eps's strongest attack: through a logistic-regression
    surrogate of it (gradient) and by a search scored by the forest itself; the forest judges both."""
    eps = verdict_eps(res.eps for res, *_ in fitted.values() if res.norm == "linf")
    keys = [k for k, (res, *_) in fitted.items() if res.eps == eps]
    if not keys:
        return None
    key = max(keys, key=lambda k: fitted[k][0].success_rate_on_correct)
    res, det, X, y, _ = fitted[key]
    target = calibrated_target(name, lambda x: det.decision_function(nd.transform(x)), det.oob_clean_scores_,
                               differentiable=forest_surrogate(nd, det, X, y))
    clean = det.decision_function(nd.transform(res.x[res.correct]))
    return detector_attack_row(ctx, rows, target, eps, clean, det.oob_clean_scores_, fitted_on=key)[0]
