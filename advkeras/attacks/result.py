"""What every attack returns."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The arrays of an AttackResult, in the order `save_result` writes them (target and queries may be None).
FIELDS = ("x", "y", "raw", "clipped", "success", "pred_clean", "pred_adv", "target", "queries")


@dataclass
class AttackResult:
    """Adversarials of one attack run, foolbox style: raw and clipped (to the eps ball) images and a
    success mask computed on the clipped ones, plus per-sample perturbation norms."""

    attack: str
    backend: str
    eps: float | None
    x: np.ndarray
    y: np.ndarray
    raw: np.ndarray
    clipped: np.ndarray
    success: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray
    target: np.ndarray | None = None
    queries: np.ndarray | None = None
    seconds: float = 0.0
    params: dict = field(default_factory=dict)
    norm: str = "linf"  # the norm eps is measured in: linf, l2 or l0 (l0 attacks take no eps)

    @property
    def l2(self) -> np.ndarray:
        return np.sqrt(((self.clipped - self.x) ** 2).reshape(len(self.x), -1).sum(1))

    @property
    def linf(self) -> np.ndarray:
        return np.abs(self.clipped - self.x).reshape(len(self.x), -1).max(1) if len(self.x) else np.zeros(0)

    @property
    def success_rate(self) -> float:
        """Share of samples whose clipped adversarial meets the criterion."""
        return float(self.success.mean()) if len(self.success) else float("nan")

    @property
    def correct(self) -> np.ndarray:
        """Mask of the samples the model classified correctly before the attack."""
        return self.pred_clean == self.y

    @property
    def fooled(self) -> np.ndarray:
        """Mask of the real adversarials: right before the attack, meeting its criterion after. Samples that
        were wrong to begin with "succeed" without any attack and are not adversarials of this run."""
        return self.success & self.correct

    @property
    def success_rate_on_correct(self) -> float:
        """Success among samples the model classified correctly to begin with (the usual paper metric)."""
        ok = self.correct
        return float(self.success[ok].mean()) if ok.any() else float("nan")

    def summary(self) -> dict:
        """Numbers a report shows; arrays stay out."""
        return summarise(self.per_image(), attack=self.attack, backend=self.backend, norm=self.norm, eps=self.eps,
                         seconds=self.seconds, params=self.params)

    def per_image(self) -> dict[str, np.ndarray]:
        """The per-image numbers without the images: labels, predictions, success, norms (target, queries)."""
        extra = {k: v for k, v in (("target", self.target), ("queries", self.queries)) if v is not None}
        return {"y": self.y, "success": self.success, "pred_clean": self.pred_clean, "pred_adv": self.pred_adv,
                "l2": self.l2, "linf": self.linf, **extra}

    def save(self, path) -> None:
        """`.npz` with x, x_adv (clipped), raw, y, success, l2, linf (and target, queries when set)."""
        extra = {k: v for k, v in (("target", self.target), ("queries", self.queries)) if v is not None}
        np.savez_compressed(path, x=self.x, x_adv=self.clipped, raw=self.raw, y=self.y, success=self.success,
                            l2=self.l2, linf=self.linf, pred_clean=self.pred_clean, pred_adv=self.pred_adv,
                            **extra)


def summarise(per_image: dict[str, np.ndarray], *, attack: str, backend: str, norm: str, eps: float | None,
              seconds: float, params: dict) -> dict:
    """`AttackResult.summary` from per-image numbers alone (see `AttackResult.per_image`), so a run too large to
    hold its images (sharded) is summed up the same way."""
    y, s, pred_clean = per_image["y"], per_image["success"], per_image["pred_clean"]
    correct = pred_clean == y
    queries = per_image.get("queries")
    return {"attack": attack, "backend": backend, "norm": norm, "eps": eps, "n": int(len(y)),
            "targeted": per_image.get("target") is not None,
            "success_rate": float(s.mean()) if len(s) else float("nan"),
            "success_rate_on_correct": float(s[correct].mean()) if correct.any() else float("nan"),
            "clean_accuracy": float(correct.mean()) if len(y) else float("nan"),
            "median_l2_success": float(np.median(per_image["l2"][s])) if s.any() else None,
            "median_linf_success": float(np.median(per_image["linf"][s])) if s.any() else None,
            "mean_queries": float(queries.mean()) if queries is not None else None,
            "seconds": seconds, "params": params}


def save_result(res: AttackResult, path: str | Path) -> Path:
    """Write `res` losslessly (every array, dtypes kept, and its metadata) as `.npz`, atomically: to a temporary
    name in the same folder, then renamed, so a reader (or a killed writer) sees a whole file or none.
    `load_result` reads it back; `AttackResult.save` is the export for people (x_adv, norms) instead."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")  # .npz: numpy would append it otherwise
    arrays = {f: getattr(res, f) for f in FIELDS if getattr(res, f) is not None}
    meta = {"attack": res.attack, "backend": res.backend, "eps": res.eps, "norm": res.norm, "seconds": res.seconds,
            "params": res.params}
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta, default=str)), **arrays)
    os.replace(tmp, path)
    return path


def load_result(path: str | Path) -> AttackResult:
    """The AttackResult `save_result` wrote to `path` (params come back as JSON gives them: tuples as lists)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {f: (z[f] if f in z.files else None) for f in FIELDS}
    return AttackResult(meta["attack"], meta["backend"], meta["eps"], norm=meta["norm"], seconds=meta["seconds"],
                        params=meta["params"], **arrays)
