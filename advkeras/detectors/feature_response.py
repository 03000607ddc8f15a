"""Feature-response detector: local spatial entropy of guided-backprop maps (Amirian et al., 2018).

An adversarial perturbation makes the network respond to scattered pixels instead of the object, so
its feature response (guided backprop of the top logit) is spread out. Per image, the response is
cut into local windows, each window turned into a distribution h, and its entropy
S_k = -sum h log2 h taken; the average of S_k is the score. A threshold on the score, set on clean
images at a target false-positive rate, flags adversarials.

The paper's slides do not say what h is; two readings are implemented (`distribution`):
"magnitude" (default): the window's response intensities normalised to sum 1 (a flat window has
the maximum, log2(window^2) bits); "histogram": the normalised histogram of the window's grey levels
after the response is scaled to [0, 1] by its per-image maximum and quantised to `bins` levels, as
local-entropy image filters compute it (a flat window has 0 bits, all-different levels the maximum).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from advkeras.detectors.sklearn_compat import DetectorEstimatorMixin, require_fitted
from advkeras.errors import InputError
from advkeras.evaluation.detection import threshold_at_fpr
from advkeras.explain.guided_backprop import METHODS, response_function
from advkeras.models.checks import check_images

BACKENDS = ("native", "innvestigate")
DIRECTIONS = ("higher", "lower", "two-sided")
DISTRIBUTIONS = ("magnitude", "histogram")
_LOG2 = float(np.log(2.0))


def response_intensity(response: tf.Tensor) -> tf.Tensor:
    """N x H x W x C feature response -> N x H x W non-negative intensity (sum of |r| over channels)."""
    return tf.reduce_sum(tf.abs(tf.convert_to_tensor(response, tf.float32)), axis=-1)


def _check_window(r: tf.Tensor, response, window: int) -> None:
    if window < 1:
        raise InputError(f"window must be a positive number of pixels, got {window}.")
    if r.shape.rank != 3 or (r.shape[1] is not None and min(r.shape[1], r.shape[2]) < window):
        raise InputError(f"response must be N x H x W x C with H, W >= window={window}; got {response.shape}.")


def _magnitude_entropy(r: tf.Tensor, window: int, stride: int) -> tf.Tensor:
    """h = the window's intensities / their sum. Uses sum h log h = (sum r log r) / R - log R with
    R = sum r, so two average-pools do all windows at once; an all-zero window has entropy 0."""
    r = r[..., None]
    area = float(window * window)
    pool = lambda t: tf.nn.avg_pool2d(t, window, stride, "VALID") * area  # noqa: E731  (window sums)
    total = pool(r)
    r_log_r = pool(tf.math.xlogy(r, r))
    safe = tf.where(total > 0, total, 1.0)
    entropy = (tf.math.log(safe) - r_log_r / safe) / _LOG2
    return tf.maximum(entropy[..., 0], 0.0)  # rounding can give -1e-7 for one-hot windows


def grey_levels(r: tf.Tensor, bins: int = 256) -> tf.Tensor:
    """N x H x W intensity -> integer grey levels 0..bins-1 (float), scaled by each image's maximum
    (an all-zero response is all level 0), as a heatmap saved as an 8-bit image would be for bins=256."""
    peak = tf.reduce_max(r, axis=[1, 2], keepdims=True)
    scaled = r / tf.where(peak > 0, peak, 1.0)
    return tf.minimum(tf.floor(scaled * float(bins - 1) + 0.5), float(bins - 1))


def _histogram_entropy(r: tf.Tensor, window: int, stride: int, bins: int) -> tf.Tensor:
    """h = the normalised histogram of the window's grey levels. With n = window^2 pixels and c(i) the
    number of pixels in the window sharing pixel i's level, -sum_b p_b log2 p_b = log2 n - mean_i log2 c(i),
    so counting equal pairs inside each patch gives the entropy without a bins-wide one-hot."""
    q = grey_levels(r, bins)[..., None]
    patches = tf.image.extract_patches(q, [1, window, window, 1], [1, stride, stride, 1], [1, 1, 1, 1], "VALID")
    same = tf.cast(tf.equal(patches[..., :, None], patches[..., None, :]), tf.float32)  # N x H' x W' x n x n
    counts = tf.reduce_sum(same, axis=-1)
    n = float(window * window)
    entropy = (tf.math.log(n) - tf.reduce_mean(tf.math.log(counts), axis=-1)) / _LOG2
    return tf.maximum(entropy, 0.0)


def local_spatial_entropy(response: tf.Tensor | np.ndarray, window: int = 4, stride: int | None = None,
                          distribution: str = "magnitude", bins: int = 256) -> tf.Tensor:
    """Entropy map (N x H' x W', bits) of each `window` x `window` patch of the response intensity.

    `distribution`: what h is in each window, "magnitude" (intensities normalised to sum 1) or
    "histogram" (normalised histogram of `bins` grey levels; see the module docstring).
    """
    if distribution not in DISTRIBUTIONS:
        raise InputError(f"unknown distribution {distribution!r}; choose one of: {', '.join(DISTRIBUTIONS)}.")
    if int(bins) < 2:
        raise InputError(f"bins must be at least 2 grey levels, got {bins}.")
    r = response_intensity(response)
    _check_window(r, response, window)
    stride = stride or window
    if distribution == "histogram":
        return _histogram_entropy(r, window, stride, int(bins))
    return _magnitude_entropy(r, window, stride)


def mean_local_entropy(response: tf.Tensor | np.ndarray, window: int = 4, stride: int | None = None,
                       distribution: str = "magnitude", bins: int = 256) -> tf.Tensor:
    """The detector's score per image: the local spatial entropy averaged over windows."""
    return tf.reduce_mean(local_spatial_entropy(response, window, stride, distribution, bins), axis=[1, 2])


class FeatureResponseDetector(DetectorEstimatorMixin, BaseEstimator):
    """Flags images whose average local spatial entropy of the feature response exceeds a threshold.

    Parameters (keyword-only, stored as given): `model` (logits classifier), `window`/`stride` (pixels),
    `fpr` (target false-positive rate used by `predict`), `method` ("guided_backprop" or "deconvnet"),
    `backend` ("native": compiled TF; "innvestigate": a spawned iNNvestigate worker), `batch_size`,
    `direction`: which entropies are suspicious: "higher" (the paper's rule), "lower", or "two-sided"
    (distance from the clean median in clean inter-quartile ranges; learned from clean images only);
    `distribution` ("magnitude" or "histogram") and `bins`: the window distribution h (module docstring).

    `fit(x_clean)` scores clean images and sets `thresholds_` ({fpr: threshold} for 1/5/10 % and `fpr`)
    and `threshold_`. `score_samples(x)` is oriented so that higher means more suspicious;
    `decision_function(x)` is score_samples - threshold_ (> 0 means adversarial); both, and `predict`, need
    `fit` first. `entropy`, `responses`, `maps` and `entropy_function` learn nothing and work unfitted.
    """

    _shared_params = ("model",)
    _transient = ("_entropy_fn", "_innvestigate")  # a compiled graph and a worker process: rebuilt on use

    def __init__(self, model: tf.keras.Model, *, window: int = 4, stride: int | None = None, fpr: float = 0.05,
                 method: str = "guided_backprop", backend: str = "native", direction: str = "higher",
                 distribution: str = "magnitude", bins: int = 256, batch_size: int = 128, progress: bool = False):
        self.model = model
        self.window = window
        self.stride = stride
        self.fpr = fpr
        self.method = method
        self.backend = backend
        self.direction = direction
        self.distribution = distribution
        self.bins = bins
        self.batch_size = batch_size
        self.progress = progress

    def __repr__(self) -> str:
        return (f"FeatureResponseDetector(window={self.window}, stride={self.stride}, fpr={self.fpr}, "
                f"method={self.method!r}, backend={self.backend!r}, direction={self.direction!r}, "
                f"distribution={self.distribution!r}, bins={self.bins})")

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}.")
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}.")
        if self.direction not in DIRECTIONS:
            raise InputError(f"unknown direction {self.direction!r}; choose one of: {', '.join(DIRECTIONS)}.")
        if self.distribution not in DISTRIBUTIONS:
            raise InputError(f"unknown distribution {self.distribution!r}; choose one of: "
                             f"{', '.join(DISTRIBUTIONS)}.")
        if int(self.bins) < 2:
            raise InputError(f"bins must be at least 2 grey levels, got {self.bins}.")
        if not 0 < self.fpr < 1:
            raise InputError(f"fpr must be in (0, 1), e.g. 0.05 for 5 %; got {self.fpr}.")
        if int(self.window) < 1 or min(self.model.input_shape[1:3]) < int(self.window):
            raise InputError(f"window={self.window} must be between 1 and the image size "
                             f"{tuple(self.model.input_shape[1:3])}.")

    def entropy_function(self) -> tf.types.experimental.Function:
        """Compiled ``f(x) -> (mean local entropy, logits)`` in TF ops only (for serving and benchmarks)."""
        key = (id(self.model), self.method, int(self.window), self.stride, self.distribution, int(self.bins))
        # (set_params may swap the model or the entropy's definition)
        cached = getattr(self, "_entropy_fn", None)
        if cached is None or cached.key != key:
            respond = response_function(self.model, self.method)
            window, stride, dist, bins = int(self.window), self.stride, self.distribution, int(self.bins)

            @tf.function(input_signature=respond.input_signature, autograph=False)  # no Python control flow
            def score(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                response, logits = respond(x)
                return mean_local_entropy(response, window, stride, dist, bins), logits

            score.respond, score.key = respond, key
            self._entropy_fn = score
        return self._entropy_fn

    def _worker(self):
        # One worker per detector, started on first use and reused (starting one costs seconds).
        if getattr(self, "_innvestigate", None) is None:
            from advkeras.explain.innvestigate_worker import InnvestigateWorker

            self._innvestigate = InnvestigateWorker(self.model, batch_size=self.batch_size)
        return self._innvestigate

    def close(self) -> None:
        """Stop the iNNvestigate worker, if one was started (backend="innvestigate")."""
        if getattr(self, "_innvestigate", None) is not None:
            self._innvestigate.close()
            self._innvestigate = None

    def responses(self, x: np.ndarray) -> np.ndarray:
        """Feature responses of `x` (image-shaped) from the configured backend."""
        self._validate()
        x = check_images(x, self.model)
        if self.backend == "innvestigate":
            return self._worker().analyze(x, self.method)
        respond = self.entropy_function().respond
        out = [respond(tf.constant(x[i:i + self.batch_size]))[0].numpy()
               for i in tqdm(range(0, len(x), self.batch_size), desc="feature responses", unit="batch",
                             disable=not self.progress, leave=False)]
        return np.concatenate(out) if out else np.zeros_like(x)

    def entropy(self, x: np.ndarray) -> np.ndarray:
        """Average local spatial entropy per image, in bits."""
        self._validate()
        x = check_images(x, self.model)
        if self.backend == "innvestigate":
            return mean_local_entropy(self.responses(x), int(self.window), self.stride, self.distribution,
                                      int(self.bins)).numpy()
        fn = self.entropy_function()
        out = [fn(tf.constant(x[i:i + self.batch_size]))[0].numpy()
               for i in tqdm(range(0, len(x), self.batch_size), desc="local entropy", unit="batch",
                             disable=not self.progress, leave=False)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def fit(self, X: np.ndarray, y: Sequence | None = None, *,
            fprs: Sequence[float] = (0.01, 0.05, 0.10)) -> "FeatureResponseDetector":
        """Calibrate thresholds on clean images `X` only (`y` is ignored; sklearn signature); `fprs`: the
        false-positive rates to keep thresholds for (besides `fpr`), for `predict(x, fpr=...)`."""
        self._validate()
        x_clean = check_images(X, self.model, name="x_clean")
        if len(x_clean) < 2:
            raise InputError(f"fit needs clean calibration images (at least 2, better 100+); got {len(x_clean)}.")
        entropy = self.entropy(x_clean)
        q1, self.center_, q3 = np.percentile(entropy, [25, 50, 75])
        self.scale_ = max(float(q3 - q1), 1e-12)
        scores = self._orient(entropy)
        self.calibration_scores_ = scores
        self.thresholds_ = {float(f): threshold_at_fpr(scores, f) for f in sorted({*fprs, self.fpr})}
        self.threshold_ = self.thresholds_[float(self.fpr)]
        self.n_calibration_ = len(scores)
        return self

    def _orient(self, entropy: np.ndarray) -> np.ndarray:
        if self.direction == "higher":
            return entropy
        if self.direction == "lower":
            return -entropy
        return np.abs(entropy - self.center_) / self.scale_

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        """Suspicion score per image (higher = more adversarial-looking), per `direction`."""
        self._check_fitted()
        return self._orient(self.entropy(x))

    def _check_fitted(self) -> None:
        require_fitted(self, ["threshold_", "thresholds_"], "call fit(x_clean) on clean images first.")

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """score - threshold_: positive for images flagged as adversarial."""
        self._check_fitted()
        return self.score_samples(x) - self.threshold_

    def predict(self, x: np.ndarray, fpr: float | None = None) -> np.ndarray:
        """1 for adversarial, 0 for clean, at the threshold for `fpr` (default: the detector's `fpr`)."""
        self._check_fitted()
        if fpr is not None and float(fpr) not in self.thresholds_:
            raise InputError(f"no threshold for fpr={fpr}; fitted ones: {sorted(self.thresholds_)}.")
        thr = self.threshold_ if fpr is None else self.thresholds_[float(fpr)]
        return (self.score_samples(x) > thr).astype(np.int64)

    def maps(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(response intensity N x H x W, local entropy map N x H' x W') for figures."""
        resp = self.responses(x)
        return (response_intensity(resp).numpy(),
                local_spatial_entropy(resp, int(self.window), self.stride, self.distribution, int(self.bins)).numpy())
