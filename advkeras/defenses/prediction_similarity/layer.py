"""`PredictionSimilarity`: a stateful Keras layer that watches each user's query history.

Per query it compares a compact representation of the image with the same user's last `history`
representations (scope="user") or with the last `history` of all users together (scope="global": one
bounded ring buffer, so one attacker using many user ids is caught while it stays within that window),
so the cost per query is O(history) whatever the number of stored queries.

Representation (`representation=`): "thumbnail" (default), a grey `thumbnail_size`^2 area-averaged
thumbnail, compared with MSE, SSIM or PSNR. Not the full image: averaging removes most per-pixel noise an
attacker adds to dodge similarity (measured on IDC: +-16/255 uniform noise moves the 16x16 thumbnail MSE by
~5e-5, while two neighbouring patches of one slide differ by ~1e-3 and up), and it keeps the state small
(1 KiB per stored query). "spectrum": the log-magnitude of the thumbnail's 2-D Fourier transform (low
frequencies), which also ignores small shifts; MSE/PSNR only. "full": the image itself, every channel (the
defenses paper's setting: SSIM on full-size images; H*W*C floats per stored query, 30 KB for a 50x50x3 patch).

Only the entries a query may match (its user's, or any in scope="global") are compared, pair by pair: with
`n_slots=1` and a `history` larger than all queries of a run, one ring holds every query of every user and
each query is compared with all earlier queries of its user (the paper's "all previous images"), at a cost
that grows with that user's history rather than with the ring.

State lives in non-trainable weights created in `build()`, so it is saved by `.keras` files and
captured by `tf.saved_model.save`:
- user slots: a user id is hashed (64-bit fingerprint) to one of `n_slots` slots; every history entry
  keeps its owner's fingerprint, so two users sharing a slot share its capacity but are never compared
  with each other (in scope="user");
- ring buffers of thumbnails, the classifier's top class and top probability per entry;
- counters (`queries`, `alarms`, per-slot queries/alarms, the query number of a slot's first alarm),
  all updated with `assign_add`/`scatter_add`/`scatter_min`, so concurrent calls lose no count.
  Two concurrent calls of the *same* slot may write the same ring position (one entry lost); the
  counters stay exact.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from advkeras.defenses.prediction_similarity.metrics import METRICS, REPRESENTATIONS, distance, represent
from advkeras.errors import InputError

ACTIONS = ("flag", "flip", "block")
ALARM_ON = ("distance", "confidence_drop")
SCOPES = ("user", "global")
NO_HISTORY = float(np.finfo(np.float32).max)  # min_distance when the user has no earlier query
_NEVER = np.iinfo(np.int64).max  # first_alarm value of a slot that never alarmed
OUTPUT_KEYS = ("probabilities", "label", "alarm", "adversarial_probability", "min_distance",
               "match_distance", "distance_alarm", "prediction_alarm")


class StateMixin:
    """State of a similarity layer as numpy arrays keyed by variable name, out and back in."""

    _same_config = "the same configuration"  # what a shape mismatch asks for

    def get_state(self) -> dict[str, np.ndarray]:
        """The history, counters and thresholds as numpy arrays keyed by variable name."""
        return {_short(w.name): w.numpy() for w in self.weights}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `get_state` returned (a layer of the same configuration)."""
        own = {_short(w.name): w for w in self.weights}
        missing = set(own) - set(state)
        if missing:
            raise InputError(f"state lacks {sorted(missing)}; pass the dict get_state() returned.")
        for name, w in own.items():
            value = np.asarray(state[name])
            if value.shape != tuple(w.shape):
                raise InputError(f"state {name!r} has shape {value.shape}, this layer needs {tuple(w.shape)} "
                                 f"({self._same_config}).")
            w.assign(value if w.dtype == tf.string else value.astype(w.dtype.as_numpy_dtype))


@tf.keras.utils.register_keras_serializable(package="advkeras")
class PredictionSimilarity(StateMixin, tf.keras.layers.Layer):
    """Detects attack processes from a user's query history; optionally answers them falsely.

    Call it on `[image, probabilities, user_id]` (NxHxWxC float32 in [0, 1], NxK softmax output of the
    classifier, N strings). Returns a dict (see `OUTPUT_KEYS`):
    - `min_distance`: distance to the closest earlier image of the user (`NO_HISTORY` if none);
    - `distance_alarm`: how many earlier images are closer than `threshold`;
    - `prediction_alarm`: how many of those close earlier queries had a higher top-class probability
      (by more than `drop_margin`) for their top class than this query has: the attacker pushing it down;
    - `match_distance`: distance to the `min_matches`-th closest earlier image (what calibration uses);
    - `alarm`: `distance_alarm >= min_matches` (`alarm_on="distance"`, the default), or
      `prediction_alarm >= min_matches` (`alarm_on="confidence_drop"`: only close queries that also lowered the
      answer's confidence count, which spares benign users who re-send one image and catches the untargeted
      attacker, who must push the top class down);
    - `adversarial_probability`: share of the user's stored recent queries that are closer than the
      threshold (a heuristic score in [0, 1], 0 for a new user);
    - `probabilities`/`label`: the answer after `action` on alarmed queries: `flag` leaves it unchanged,
      `flip` swaps the top two classes (the attacker is told the wrong class), `block` answers uniform
      probabilities and label -1.

    `threshold=None` means uncalibrated: no query alarms until `calibrate_threshold` sets it.
    """

    output_keys = OUTPUT_KEYS
    _same_config = "same n_slots, history, representation, thumbnail_size and scope"

    def __init__(self, *, metric: str = "mse", threshold: float | None = None, min_matches: int = 1,
                 drop_margin: float = 0.0, action: str = "flag", scope: str = "user", n_slots: int = 256,
                 history: int = 32, representation: str = "thumbnail", thumbnail_size: int = 16,
                 spectrum_size: int = 13, alarm_on: str = "distance", **kwargs: Any):
        super().__init__(**kwargs)
        for what, value, choices in (("alarm_on", alarm_on, ALARM_ON), ("metric", metric, METRICS),
                                     ("action", action, ACTIONS), ("scope", scope, SCOPES),
                                     ("representation", representation, REPRESENTATIONS)):
            check_choice(what, value, choices)
        if min(n_slots, history, min_matches) < 1 or min_matches > history:
            raise InputError(f"need n_slots >= 1 and 1 <= min_matches <= history, got n_slots={n_slots}, "
                             f"history={history}, min_matches={min_matches}.")
        if representation == "spectrum" and metric == "ssim":
            raise InputError("SSIM compares images, not spectra: use metric='mse' or 'psnr' with "
                             "representation='spectrum', or representation='thumbnail' with SSIM.")
        if not 1 <= spectrum_size <= thumbnail_size:
            raise InputError(f"spectrum_size must be in [1, thumbnail_size={thumbnail_size}], got {spectrum_size}.")
        side = thumbnail_size if representation == "thumbnail" else spectrum_size
        if metric == "ssim" and representation != "full" and side < 7:
            raise InputError(f"SSIM uses a 7x7 window: thumbnail_size must be >= 7, got {thumbnail_size}.")
        self.metric, self.min_matches, self.drop_margin = metric, int(min_matches), float(drop_margin)
        self.action, self.scope, self.n_slots = action, scope, int(n_slots)
        self.history, self.thumbnail_size = int(history), int(thumbnail_size)
        self.representation, self.spectrum_size, self.side = representation, int(spectrum_size), int(side)
        self.initial_threshold = threshold
        self.alarm_on = alarm_on
        self.n_rings = self.n_slots if scope == "user" else 1
        self.rep_shape: tuple[int, int, int] = (self.side, self.side, 1)  # "full": the image's, set in build()

    # ---- state -------------------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        n_classes = int(input_shape[1][-1])
        self.n_classes = n_classes
        if self.representation == "full":
            shape = tf.TensorShape(input_shape[0])[1:]
            if not shape.is_fully_defined():
                raise InputError(f"representation='full' stores whole images: the image shape must be known, got "
                                 f"{shape}.")
            self.rep_shape = tuple(int(v) for v in shape)
            if self.metric == "ssim" and min(self.rep_shape[:2]) < 7:
                raise InputError(f"SSIM uses a 7x7 window: images must be at least 7x7, got {self.rep_shape}.")
        d, k, r, s = int(np.prod(self.rep_shape)), self.history, self.n_rings, self.n_slots

        def weight(name, shape, dtype, value=0):
            init = tf.keras.initializers.Constant(value)
            return self.add_weight(name=name, shape=shape, dtype=dtype, initializer=init, trainable=False)

        thr = -np.inf if self.initial_threshold is None else float(self.initial_threshold)
        self.threshold = weight("threshold", (), tf.float32, thr)
        self.thumbs = weight("history_thumbnails", (r, k, d), tf.float32)
        self.owner = weight("history_owner", (r, k), tf.int64)  # 0 = empty entry
        self.top_class = weight("history_top_class", (r, k), tf.int32)
        self.top_prob = weight("history_top_probability", (r, k), tf.float32)
        self.ring_writes = weight("ring_writes", (r,), tf.int64)
        self.slot_queries = weight("slot_queries", (s,), tf.int64)
        self.slot_alarms = weight("slot_alarms", (s,), tf.int64)
        self.slot_first_alarm = weight("slot_first_alarm", (s,), tf.int64, _NEVER)
        self.queries = weight("queries", (), tf.int64)
        self.alarms = weight("alarms", (), tf.int64)
        super().build(input_shape)

    def reset_state(self, keep_threshold: bool = True) -> None:
        """Forget every user's history and zero the counters."""
        for w in self.weights:
            if keep_threshold and w is self.threshold:
                continue
            fill = _NEVER if w is self.slot_first_alarm else 0
            fill = -np.inf if w is self.threshold else fill
            w.assign(tf.fill(tf.shape(w), tf.cast(fill, w.dtype)))

    # ---- per query ---------------------------------------------------------------------------------
    def call(self, inputs) -> dict[str, tf.Tensor]:
        image, probs, user_id = inputs
        probs = tf.convert_to_tensor(probs, tf.float32)
        user_id = tf.reshape(tf.convert_to_tensor(user_id, tf.string), [-1])
        finger = tf.strings.to_hash_bucket_fast(user_id, np.iinfo(np.int64).max - 1) + 1  # > 0
        slot = finger % self.n_slots
        ring = slot if self.scope == "user" else tf.zeros_like(slot)
        thumbs = tf.reshape(represent(image, self.representation, self.thumbnail_size, self.spectrum_size),
                            [-1, int(np.prod(self.rep_shape))])

        # Compare with the stored history first (reads happen before this call's writes).
        owners = tf.gather(self.owner, ring)  # B x K
        valid = owners > 0 if self.scope == "global" else tf.equal(owners, finger[:, None])
        dist = self._distances(thumbs, ring, valid)
        close = valid & (dist < self.threshold)
        n_close = tf.reduce_sum(tf.cast(close, tf.int32), axis=1)
        prev_top = tf.gather(self.top_class, ring)
        now = tf.gather(probs, prev_top, batch_dims=1)
        dropped = close & (now < tf.gather(self.top_prob, ring) - self.drop_margin)
        n_dropped = tf.reduce_sum(tf.cast(dropped, tf.int32), axis=1)
        smallest = -tf.math.top_k(-dist, k=self.min_matches).values  # B x min_matches, ascending
        min_d = _finite(smallest[:, 0])
        match_d = _finite(smallest[:, -1])
        alarm = (n_close if self.alarm_on == "distance" else n_dropped) >= self.min_matches
        n_valid = tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)
        adv_prob = tf.cast(n_close, tf.float32) / tf.maximum(n_valid, 1.0)

        self._record(thumbs, probs, finger, slot, ring, alarm)
        answer, label = act(probs, alarm, self.action, self.n_classes)
        return {"probabilities": answer, "label": label, "alarm": alarm, "adversarial_probability": adv_prob,
                "min_distance": min_d, "match_distance": match_d, "distance_alarm": n_close,
                "prediction_alarm": n_dropped}

    def _distances(self, reps: tf.Tensor, ring: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """B x history distances of each row to the valid entries of its ring (inf elsewhere), computed for the
        valid (row, entry) pairs only, in chunks of about 16 MB of stored representations."""
        pairs = tf.where(valid)  # P x 2: row, entry
        rows = pairs[:, 0]
        where = tf.stack([tf.gather(ring, rows), pairs[:, 1]], axis=1)
        shape = [-1, *self.rep_shape]
        chunk = max(1, (1 << 22) // int(np.prod(self.rep_shape)))

        def body(i, out):
            lo = i * chunk
            hi = tf.minimum(lo + chunk, tf.shape(rows)[0])
            a = tf.reshape(tf.gather(reps, rows[lo:hi]), shape)
            b = tf.reshape(tf.gather_nd(self.thumbs, where[lo:hi]), shape)
            return i + 1, out.write(i, distance(a, b, self.metric))

        parts = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        _, parts = tf.while_loop(lambda i, _: i * chunk < tf.shape(rows)[0], body, (tf.constant(0), parts))
        found = tf.cond(parts.size() > 0, parts.concat, lambda: tf.zeros([0], tf.float32))
        return tf.tensor_scatter_nd_update(tf.fill(tf.shape(valid), tf.constant(np.inf, tf.float32)), pairs, found)

    def _record(self, thumbs, probs, finger, slot, ring, alarm) -> None:
        """Append this batch to the ring buffers and update the counters (atomic adds only)."""
        k = self.history
        rank, count = _rank_in_group(ring)
        keep = rank >= count - k  # more than `history` rows of one ring in a batch: keep the last ones
        start = tf.gather(self.ring_writes, ring)
        pos = (start + tf.cast(rank, tf.int64)) % k
        idx = tf.boolean_mask(tf.stack([ring, pos], axis=1), keep)
        self.thumbs.scatter_nd_update(idx, tf.boolean_mask(thumbs, keep))
        self.owner.scatter_nd_update(idx, tf.boolean_mask(finger, keep))
        self.top_class.scatter_nd_update(idx, tf.boolean_mask(tf.argmax(probs, axis=1, output_type=tf.int32), keep))
        self.top_prob.scatter_nd_update(idx, tf.boolean_mask(tf.reduce_max(probs, axis=1), keep))
        self.ring_writes.scatter_add(tf.IndexedSlices(tf.ones_like(ring), ring))

        slot_rank, _ = _rank_in_group(slot)
        ordinal = tf.gather(self.slot_queries, slot) + tf.cast(slot_rank, tf.int64) + 1  # 1-based query number
        alarm64 = tf.cast(alarm, tf.int64)
        self.slot_queries.scatter_add(tf.IndexedSlices(tf.ones_like(slot), slot))
        self.slot_alarms.scatter_add(tf.IndexedSlices(alarm64, slot))
        first = tf.where(alarm, ordinal, tf.constant(_NEVER, tf.int64))
        self.slot_first_alarm.scatter_min(tf.IndexedSlices(first, slot))
        self.queries.assign_add(tf.cast(tf.size(slot), tf.int64))
        self.alarms.assign_add(tf.reduce_sum(alarm64))

    def compute_output_shape(self, input_shape):
        n = input_shape[0][0]
        scalar = tf.TensorShape([n])
        return {"probabilities": tf.TensorShape(input_shape[1]), "label": scalar, "alarm": scalar,
                "adversarial_probability": scalar, "min_distance": scalar, "match_distance": scalar,
                "distance_alarm": scalar, "prediction_alarm": scalar}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "metric": self.metric, "threshold": self.initial_threshold,
                "min_matches": self.min_matches, "drop_margin": self.drop_margin, "action": self.action,
                "scope": self.scope, "n_slots": self.n_slots, "history": self.history,
                "representation": self.representation, "thumbnail_size": self.thumbnail_size,
                "spectrum_size": self.spectrum_size, "alarm_on": self.alarm_on}


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse a setting that is not one of `choices`, naming them."""
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")


def act(probs: tf.Tensor, alarm: tf.Tensor, action: str, n_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The answer to alarmed rows: unchanged (flag), top two classes swapped (flip) or uniform, label -1 (block)."""
    label = tf.argmax(probs, axis=1)
    if action == "flag":
        return probs, label
    if action == "block":
        uniform = tf.fill(tf.shape(probs), 1.0 / n_classes)
        return (tf.where(alarm[:, None], uniform, probs),
                tf.where(alarm, tf.constant(-1, tf.int64), label))
    top2 = tf.math.top_k(probs, k=2)
    first, second = top2.indices[:, 0], top2.indices[:, 1]
    gap = (top2.values[:, 0] - top2.values[:, 1])[:, None]
    swapped = probs - gap * tf.one_hot(first, n_classes) + gap * tf.one_hot(second, n_classes)
    return (tf.where(alarm[:, None], swapped, probs),
            tf.where(alarm, tf.cast(second, tf.int64), label))


def _rank_in_group(keys: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """For each row: how many earlier rows of the batch share its key, and how many rows do in all."""
    same = tf.cast(tf.equal(keys[:, None], keys[None, :]), tf.int32)
    rank = tf.reduce_sum(tf.linalg.band_part(same, -1, 0), axis=1) - 1  # lower triangle incl. diagonal
    return rank, tf.reduce_sum(same, axis=1)


def _finite(d: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.math.is_finite(d), d, tf.constant(NO_HISTORY, tf.float32))


def _short(name: str) -> str:
    return name.split("/")[-1].split(":")[0]
