"""The evaluation protocol shared by `advkeras detect`, the assess stage and the table script:
attack two disjoint image sets (detector fitting / unseen test), fit detectors on the first,
score the second, and report accuracy, balanced accuracy, TPR, FPR, AUC and TPR at a calibrated 5 % FPR."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import tensorflow as tf

from advkeras.attacks import AttackResult, generate
from advkeras.data.dataset import Dataset
from advkeras.detectors.relevant_neurons.descriptors import NeuronDescriptors
from advkeras.detectors.relevant_neurons.detector import RelevantNeuronDetector
from advkeras.detectors.relevant_neurons.neuron_sets import RelevantNeuronSets
from advkeras.errors import DataError
from advkeras.evaluation.detection import binary_detection_metrics, detection_metrics


@dataclass
class AttackSpec:
    """One attack setting; targeted attacks aim at (y + 1) mod C."""

    name: str
    eps: float | None = None
    targeted: bool = False
    backend: str | None = None
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name if self.eps is None else f"{self.name}@{self.eps:g}"


@dataclass
class DetectionSet:
    """Clean images the model gets right and the successful adversarials made from them."""

    clean: np.ndarray
    labels: np.ndarray
    adv: np.ndarray
    result: AttackResult | None = None


def attack_part(model: tf.keras.Model, part: Dataset, spec: AttackSpec, seed: int = 0,
                balanced: bool = False) -> DetectionSet:
    """Attack the correctly classified images of `part`; keep the successful adversarials.

    The clean side is every correctly classified image, or with `balanced` only the originals of the
    successful adversarials (the paper's "clean images and corresponding adversarial samples"): as
    many clean as adversarial samples, so accuracy is not inflated by saying "clean" to everything."""
    n_classes = int(model.output_shape[-1])
    target = (part.y + 1) % n_classes if spec.targeted else None
    res = generate(model, part.x, part.y, spec.name, eps=spec.eps, backend=spec.backend, target=target,
                   seed=seed, **spec.params)
    ok, keep = res.correct, res.fooled
    if not keep.any():
        raise DataError(f"{spec.label} succeeded on none of the {ok.sum()} correctly classified images; "
                        "raise eps or use a stronger attack.")
    ok = keep if balanced else ok
    return DetectionSet(part.x[ok], part.y[ok], res.clipped[keep], res)


def score_row(clean_scores: np.ndarray, adv_scores: np.ndarray, flag_clean: np.ndarray, flag_adv: np.ndarray,
              calibration: np.ndarray | None) -> dict:
    """Accuracy, balanced accuracy, TPR and FPR at the detector's own decision, AUC, TPR at 5 % FPR
    (threshold from `calibration`). Balanced accuracy, (TPR + 1 - FPR) / 2, is what accuracy would be on
    equally many clean and adversarial samples: 0.5 for a detector that says "clean" to everything."""
    m = detection_metrics(clean_scores, adv_scores, fprs=(0.05,), calibration_scores=calibration)
    b = binary_detection_metrics(flag_clean, flag_adv)
    at = m["at_fpr"]["0.05"]
    return {"accuracy": b["accuracy"], "balanced_accuracy": balanced_accuracy(b["tpr"], b["fpr"]),
            "tpr": b["tpr"], "fpr": b["fpr"], "auc": m["auc"],
            "tpr_at_5fpr": at["tpr"], "fpr_at_5fpr": at["fpr"], "n_clean": m["n_clean"], "n_adv": m["n_adv"]}


def balanced_accuracy(tpr: float | None, fpr: float | None) -> float | None:
    """Mean of the detection rate on adversarials and the pass rate on clean images."""
    return None if tpr is None or fpr is None else 0.5 * (tpr + 1.0 - fpr)


def _xy(desc_clean: np.ndarray, desc_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[desc_clean, desc_adv], np.r_[np.zeros(len(desc_clean)), np.ones(len(desc_adv))].astype(int)


def relevant_neuron_rows(descriptors: NeuronDescriptors, fit: DetectionSet, tests: dict[str, DetectionSet], *,
                         mus: Iterable[float] = (10,), neuron_sets: Iterable[str] = ("shared",),
                         with_label: Iterable[bool] = (True, False), n_estimators: int = 1000,
                         seed: int = 0, n_jobs: int | None = None) -> tuple[list[dict], dict]:
    """Fit one detector per (mu, set, label) on `fit`; score every set in `tests` (name -> set).

    Returns table rows and, per mu, the neuron-set summary (counts and % of neurons)."""
    fc, fa = descriptors.transform(fit.clean), descriptors.transform(fit.adv)
    X, y = _xy(fc, fa)
    test_desc = {k: (descriptors.transform(t.clean), descriptors.transform(t.adv)) for k, t in tests.items()}
    n_classes = int(descriptors.model.output_shape[-1]) if descriptors.model is not None else None
    rows, summaries = [], {}
    for mu in mus:
        sets = RelevantNeuronSets(mu, n_classes=n_classes).fit(fc[:, :-1], fc[:, -1].astype(int),
                                                               fa[:, :-1], fa[:, -1].astype(int))
        summaries[f"{mu:g}"] = sets.summary()
        for name in neuron_sets:
            for use_label in with_label:
                det = RelevantNeuronDetector(neuron_set=name, use_label=use_label, n_estimators=n_estimators,
                                             sets=sets, n_jobs=n_jobs, random_state=seed).fit(X, y)
                for test_name, (tc, ta) in test_desc.items():
                    row = score_row(det.decision_function(tc), det.decision_function(ta), det.predict(tc),
                                    det.predict(ta), det.oob_clean_scores_)
                    rows.append({"detector": "relevant-neurons", "mu": mu, "neuron_set": name,
                                 "with_label": use_label, "n_features": int(len(det.columns_)),
                                 "test": test_name, **row})
    return rows, summaries


def peer_rows(model: tf.keras.Model, fit: DetectionSet, tests: dict[str, DetectionSet],
              peers: Iterable[str] = ("feature-squeezing", "mahalanobis"),
              stats: Dataset | None = None) -> list[dict]:
    """Feature Squeezing (clean-only calibration) and Mahalanobis (class statistics from `stats`, the
    classifier's training images when given; layer weights and threshold from the `fit` set)."""
    from advkeras.detectors.peers import FeatureSqueezing, MahalanobisDetector

    rows = []
    for peer in peers:
        if peer == "feature-squeezing":
            det: Any = FeatureSqueezing(model).fit(fit.clean)
            calib = det.decision_function(fit.clean)
        elif peer == "mahalanobis":
            det = MahalanobisDetector(model).fit(fit.clean, fit.labels, fit.adv,
                                                 X_stats=None if stats is None else stats.x,
                                                 y_stats=None if stats is None else stats.y)
            calib = det.decision_function(fit.clean)
        else:
            raise DataError(f"unknown peer {peer!r}; choose feature-squeezing or mahalanobis.")
        for test_name, t in tests.items():
            sc, sa = det.decision_function(t.clean), det.decision_function(t.adv)
            rows.append({"detector": peer, "test": test_name,
                         **score_row(sc, sa, sc > det.threshold_, sa > det.threshold_, calib)})
    return rows
