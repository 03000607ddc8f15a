"""`IndexedPredictionSimilarity`: a query history that cannot be flushed cheaply, searched in constant time.

The ring-buffer layer (`PredictionSimilarity`) keeps each user's last 32 queries: 32 cover queries flush it, and
a new user id per query escapes it. This layer keeps *every* query of the service, up to `capacity` (a FIFO:
the oldest are forgotten first, or after `max_age` queries), and finds near-duplicates of a new query without
scanning that history, Blacklight-style but on a representation that blinding does not change:

1. representation: `canonical_views` (standardised grey thumbnail; the 8 rotations/mirrors and a grid of small
   shifts as lookup views), one unit vector per view;
2. locality-sensitive hashing: `tables` random-hyperplane signatures of `bits` bits per view; near-duplicates
   share a signature in some table with high probability, unrelated patches almost never (24 bits: with 16,
   look-alike patches of one tissue collide often enough that the candidates to verify, and the cost per query,
   grow with the stored queries: 1.1 -> 15.8 ms per query at batch 64 from 10^3 to 10^6 stored, against
   1.1 -> 1.5 ms with 24 bits; scripts/bench_prediction_similarity.py);
3. a set-associative hash table (`tables` x buckets x `ways`) maps a key (signature, table and, for the per-user
   scope, the user's fingerprint) to the sequence numbers of the stored queries that had it; a bucket that is
   full forgets its oldest entry;
4. every candidate is verified with its exact distance (1 - cosine of the stored identity view and the query's
   matching view), so the alarm is a calibrated distance threshold, not a hash coincidence.

Cost per query: `views x tables x ways` gathers and as many short dot products, whatever the number of stored
queries. Memory per stored query: the float16 view (2 x thumbnail_size^2 bytes), 4 int64s, the user id, and
`tables x ways`-way index entries (16 bytes each) for each scope.

Scopes: "user" compares a query with the same user's earlier queries; "global" with *other* users' earlier
queries (one attacker with many ids), and names the matched user in `matched_user`; "both" (default) does
both, each with its own calibrated threshold. Identical re-sends (same 8-bit content) never count: a user
who re-opens a patch, or colleagues who look at the same slide, send the same image, an attacker never does.
An alarm needs `min_matches` distinct earlier near-duplicates (a re-scanned patch is one or two; an attack
process sends tens to thousands). Rows of one request are matched with each other too (earlier rows first).

All state is in non-trainable variables created in `build()`, so `.keras` files and SavedModels carry it.
Two concurrent calls can lose an index entry (scatter writes to the same bucket way); counters stay exact.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from advkeras.defenses.prediction_similarity.canonical import canonical_views, content_fingerprint, n_views
from advkeras.defenses.prediction_similarity.layer import ACTIONS, NO_HISTORY, StateMixin, act, check_choice
from advkeras.errors import InputError

INDEX_SCOPES = ("user", "global", "both")
_ROW_BITS = 20  # rows of one request are matched with each other up to 2^20 rows
ORIENTATIONS = (1, 2, 4, 8)
OUTPUT_KEYS = ("probabilities", "label", "alarm", "adversarial_probability", "min_distance", "match_distance",
               "distance_alarm", "user_alarm", "global_alarm", "global_min_distance", "global_match_distance",
               "global_distance_alarm", "matched_user")


@tf.keras.utils.register_keras_serializable(package="advkeras")
class IndexedPredictionSimilarity(StateMixin, tf.keras.layers.Layer):
    """Detects attack processes from the service's whole recent query history (see the module docstring).

    Call it on `[image, probabilities, user_id]`. Returns a dict (`OUTPUT_KEYS`):
    - `min_distance` / `match_distance`: distance to the closest / the `min_matches`-th closest earlier
      near-duplicate of the same user, counting each distinct content once (`NO_HISTORY` if none);
      `distance_alarm`: how many are below `threshold` (counted up to `min_matches`);
    - the same with `global_` for other users' queries (threshold `global_threshold`, `global_min_matches`
      of them: colleagues who re-scan the patches of one case make more cross-user near-duplicates than one
      user does), and `matched_user`: the id of the closest other user's query ("" if none);
    - `user_alarm`, `global_alarm`, `alarm` (either); `adversarial_probability`: the larger share of the
      near-duplicates an alarm needs, per scope (a heuristic score in [0, 1], not a calibrated probability);
    - `probabilities` / `label`: the answer after `action` on alarmed rows (flag, flip or block).

    `threshold=None` / `global_threshold=None`: uncalibrated, that scope never alarms until `calibrate_threshold`.
    `max_distance`: calibration never sets a threshold above it (two patches at a larger distance are not
    near-duplicates, however few benign users have any near-duplicate at all).
    """

    output_keys = OUTPUT_KEYS
    _same_config = "same capacity, tables, ways, scope and thumbnail_size"
    has_global = property(lambda self: self.scope in ("global", "both"))
    has_user = property(lambda self: self.scope in ("user", "both"))
    scopes = property(lambda self: ("user", "global") if self.scope == "both" else (self.scope,))

    def __init__(self, *, threshold: float | None = None, global_threshold: float | None = None,
                 min_matches: int = 3, global_min_matches: int = 5, action: str = "flag", scope: str = "both",
                 capacity: int = 32768,
                 tables: int = 8, bits: int = 24, ways: int = 8, max_age: int | None = None,
                 thumbnail_size: int = 16, max_shift: int = 2, shift_step: int = 1, orientations: int = 8,
                 max_distance: float = 0.1, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        check_choice("action", action, ACTIONS)
        check_choice("scope", scope, INDEX_SCOPES)
        if orientations not in ORIENTATIONS:
            raise InputError(f"orientations must be one of {ORIENTATIONS} (identity, +mirror, +90 degrees, all 8), "
                             f"got {orientations}.")
        if min(capacity, tables, ways, min_matches, global_min_matches, thumbnail_size) < 1 or not 1 <= bits <= 40:
            raise InputError("need capacity, tables, ways, min_matches, global_min_matches, thumbnail_size >= 1 and "
                             f"1 <= bits <= 40; got capacity={capacity}, tables={tables}, ways={ways}, "
                             f"min_matches={min_matches}, global_min_matches={global_min_matches}, "
                             f"thumbnail_size={thumbnail_size}, bits={bits}.")
        if ways < max(min_matches, global_min_matches):
            raise InputError(f"ways ({ways}) must be >= min_matches and global_min_matches ({min_matches}, "
                             f"{global_min_matches}): a bucket keeps the last `ways` queries of one signature, so "
                             "fewer ways could never hold enough near-duplicates of one image.")
        if max_shift < 0 or shift_step < 1 or (max_age is not None and max_age < 1) or not 0 < max_distance <= 2:
            raise InputError(f"need max_shift >= 0, shift_step >= 1, max_age >= 1 (or None) and 0 < max_distance <= 2; "
                             f"got {max_shift}, {shift_step}, {max_age}, {max_distance}.")
        self.initial_threshold, self.initial_global_threshold = threshold, global_threshold
        self.min_matches, self.global_min_matches = int(min_matches), int(global_min_matches)
        self.action, self.scope = action, scope
        self.capacity, self.tables, self.bits, self.ways = int(capacity), int(tables), int(bits), int(ways)
        self.max_age = None if max_age is None else int(max_age)
        self.thumbnail_size, self.max_shift, self.shift_step = int(thumbnail_size), int(max_shift), int(shift_step)
        self.orientations, self.max_distance, self.seed = int(orientations), float(max_distance), int(seed)
        self.n_views = n_views(self.orientations, self.max_shift, self.shift_step)
        scopes = 2 if scope == "both" else 1
        self.n_buckets = max(1, scopes * self.capacity // self.ways)  # per table: one entry per query and scope

    # ---- state -------------------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        self.n_classes = int(input_shape[1][-1])
        d, q = self.thumbnail_size ** 2, self.capacity

        def weight(name, shape, dtype, value=0):
            return self.add_weight(name=name, shape=shape, dtype=dtype, trainable=False,
                                   initializer=tf.keras.initializers.Constant(value))

        def threshold(v):
            return -np.inf if v is None else float(v)

        self.threshold = weight("threshold", (), tf.float32, threshold(self.initial_threshold))
        self.global_threshold = weight("global_threshold", (), tf.float32, threshold(self.initial_global_threshold))
        planes = np.random.default_rng(self.seed).standard_normal((d, self.tables * self.bits)).astype(np.float32)
        self.planes = weight("hyperplanes", planes.shape, tf.float32, planes)
        self.stored_view = weight("stored_view", (q, d), tf.float16)
        self.stored_seq = weight("stored_seq", (q,), tf.int64)  # 0 = empty
        self.stored_owner = weight("stored_owner", (q,), tf.int64)
        self.stored_content = weight("stored_content", (q,), tf.int64)
        self.stored_user = tf.Variable(tf.fill([q], ""), trainable=False, name="stored_user")
        rows = self.tables * self.n_buckets
        self.index_key = weight("index_key", (rows, self.ways), tf.int64)
        self.index_seq = weight("index_seq", (rows, self.ways), tf.int64)
        self.queries = weight("queries", (), tf.int64)  # also the last sequence number given out
        self.alarms = weight("alarms", (), tf.int64)
        super().build(input_shape)

    def _kept(self) -> tuple[tf.Variable, ...]:
        return (self.threshold, self.global_threshold, self.planes)

    def reset_state(self, keep_threshold: bool = True) -> None:
        """Forget every stored query and zero the counters (the hyperplanes stay)."""
        for w in self.weights:
            is_threshold = w is self.threshold or w is self.global_threshold
            if w is self.planes or (keep_threshold and is_threshold):
                continue
            fill = -np.inf if is_threshold else (b"" if w.dtype == tf.string else 0)
            w.assign(tf.fill(tf.shape(w), tf.constant(fill, w.dtype)))

    # ---- per query ---------------------------------------------------------------------------------
    def call(self, inputs) -> dict[str, tf.Tensor]:
        image, probs, user_id = inputs
        probs = tf.convert_to_tensor(probs, tf.float32)
        user_id = tf.reshape(tf.convert_to_tensor(user_id, tf.string), [-1])
        n = tf.shape(user_id, out_type=tf.int64)[0]
        owner = tf.strings.to_hash_bucket_fast(user_id, np.iinfo(np.int64).max - 1) + 1  # > 0
        views = canonical_views(image, size=self.thumbnail_size, max_shift=self.max_shift,
                                shift_step=self.shift_step, orientations=self.orientations)
        content = content_fingerprint(image)
        signature = self._signatures(views)  # N x V x T
        last = self.queries.assign_add(n)
        new_seq = last - n + 1 + tf.range(n, dtype=tf.int64)
        batch = _Batch(views, content, owner, user_id, new_seq)

        # keys and bucket rows of every view, per active scope; the identity view's (view 0) are also where
        # this batch is stored
        keys = {scope: self._keys(signature, owner, scope) for scope in self.scopes}
        out: dict[str, tf.Tensor] = {}
        for scope in ("user", "global"):
            if scope in keys:
                thr = self.threshold if scope == "user" else self.global_threshold
                out.update(self._search(batch, *keys[scope], scope, thr))
            else:
                out.update(_nothing(scope, n))
        user_alarm, global_alarm = out.pop("user_alarm_"), out.pop("global_alarm_")
        alarm = user_alarm | global_alarm
        self._record(batch, keys)
        self.alarms.assign_add(tf.reduce_sum(tf.cast(alarm, tf.int64)))
        share = tf.maximum(tf.cast(out["distance_alarm"], tf.float32) / self.min_matches,
                           tf.cast(out["global_distance_alarm"], tf.float32) / self.global_min_matches)
        answer, label = act(probs, alarm, self.action, self.n_classes)
        return {**out, "probabilities": answer, "label": label, "alarm": alarm,
                "user_alarm": user_alarm, "global_alarm": global_alarm, "adversarial_probability": share}

    def _signatures(self, views: tf.Tensor) -> tf.Tensor:
        """N x V x T int64: one `bits`-bit random-hyperplane signature per view and table."""
        proj = tf.einsum("nvd,dk->nvk", views, self.planes)
        shape = tf.concat([tf.shape(proj)[:2], [self.tables, self.bits]], axis=0)
        bits = tf.cast(tf.reshape(proj, shape) > 0, tf.int64)
        return tf.reduce_sum(bits * (2 ** tf.range(self.bits, dtype=tf.int64)), axis=-1)

    def _keys(self, signature: tf.Tensor, owner: tf.Tensor, scope: str) -> tuple[tf.Tensor, tf.Tensor]:
        """Hash-table keys (> 0) and flat bucket rows for signatures N x ... x T of the given owners (N)."""
        scope_key = owner if scope == "user" else tf.zeros_like(owner)
        extra = len(signature.shape) - 1
        scope_key = tf.reshape(scope_key, [-1] + [1] * extra)
        table = tf.range(1, self.tables + 1, dtype=tf.int64)
        key = _mix(signature + table * 0x1F3D5B79 + _mix(scope_key))
        key = tf.bitwise.bitwise_and(key, 2 ** 62 - 1) + 1
        row = (table - 1) * self.n_buckets + tf.math.floormod(key, self.n_buckets)
        return key, row

    def _search(self, b: "_Batch", key: tf.Tensor, row: tf.Tensor, scope: str,
                threshold: tf.Tensor) -> dict[str, tf.Tensor]:
        """Distances of each row to its distinct earlier near-duplicates in scope (history and earlier rows),
        from the keys and bucket rows of its views (N x V x T)."""
        stored_rows, stored_seq, stored_views = self._stored_candidates(key, row)
        batch_rows, batch_seq, batch_views = _batch_candidates(key, b, self.ways)
        rows = tf.concat([stored_rows, batch_rows], 0)
        seq = tf.concat([stored_seq, batch_seq], 0)
        view_idx = tf.concat([stored_views, batch_views], 0)
        vec, cand_owner, cand_content, cand_user, alive = self._candidate_data(seq, b)
        if self.max_age is not None:
            alive &= seq > self.queries - self.max_age
        same_owner = tf.equal(cand_owner, tf.gather(b.owner, rows))
        alive &= same_owner if scope == "user" else ~same_owner
        alive &= tf.not_equal(cand_content, tf.gather(b.content, rows))  # identical re-sends never count
        query_view = tf.gather_nd(b.views, tf.stack([rows, view_idx], axis=1))
        dist = 1.0 - tf.reduce_sum(query_view * vec, axis=-1)
        rows, content, dist, cand_user = (tf.boolean_mask(t, alive) for t in (rows, cand_content, dist, cand_user))
        need = self.min_matches if scope == "user" else self.global_min_matches
        ordered, names = _per_row_sorted(rows, content, dist, cand_user, tf.shape(b.owner)[0], need)
        n_close = tf.reduce_sum(tf.cast(ordered < threshold, tf.int32), axis=1)
        prefix = "" if scope == "user" else "global_"
        out = {f"{prefix}min_distance": ordered[:, 0], f"{prefix}match_distance": ordered[:, need - 1],
               f"{prefix}distance_alarm": n_close, f"{scope}_alarm_": n_close >= need}
        if scope == "global":
            out["matched_user"] = names
        return out

    def _stored_candidates(self, key: tf.Tensor, row: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(query row, stored sequence number, view) of every index entry whose key equals a view's key."""
        keys = tf.gather(self.index_key, row)  # N x V x T x W
        seqs = tf.gather(self.index_seq, row)
        hit = tf.where(tf.equal(keys, key[..., None]) & (seqs > 0))  # M x 4: n, v, t, w
        return hit[:, 0], tf.gather_nd(seqs, hit), hit[:, 1]

    def _candidate_data(self, seq: tf.Tensor, b: "_Batch"):
        """Identity view, owner, content fingerprint, user id of candidates (stored or in this batch), and whether
        the candidate is still there (a stored query overwritten by a newer one is not)."""
        first = b.seq[0]
        in_batch = seq >= first
        i = tf.clip_by_value(seq - first, 0, tf.cast(tf.shape(b.seq)[0], tf.int64) - 1)
        slot = tf.math.floormod(seq, self.capacity)
        was_stored = tf.equal(tf.gather(self.stored_seq, slot), seq)  # not yet overwritten by a newer query
        vec = tf.where(in_batch[:, None], tf.gather(b.views[:, 0], i),
                       tf.cast(tf.gather(self.stored_view, slot), tf.float32))
        owner = tf.where(in_batch, tf.gather(b.owner, i), tf.gather(self.stored_owner, slot))
        content = tf.where(in_batch, tf.gather(b.content, i), tf.gather(self.stored_content, slot))
        user = tf.where(in_batch, tf.gather(b.user_id, i), tf.gather(self.stored_user, slot))
        return vec, owner, content, user, in_batch | was_stored

    def _record(self, b: "_Batch", keys: dict[str, tuple[tf.Tensor, tf.Tensor]]) -> None:
        """Store this batch's identity views and add them to the index (each full bucket forgets its oldest)."""
        slot = tf.math.floormod(b.seq, self.capacity)[:, None]
        self.stored_view.scatter_nd_update(slot, tf.cast(b.views[:, 0], tf.float16))
        self.stored_seq.scatter_nd_update(slot, b.seq)
        self.stored_owner.scatter_nd_update(slot, b.owner)
        self.stored_content.scatter_nd_update(slot, b.content)
        self.stored_user.scatter_nd_update(slot, b.user_id)
        for key, row in keys.values():
            key, row = key[:, 0], row[:, 0]  # N x T: the identity view's
            way = tf.argmin(tf.gather(self.index_seq, row), axis=-1)  # empty (0) or oldest entry
            where = tf.reshape(tf.stack([row, way], axis=-1), [-1, 2])
            self.index_key.scatter_nd_update(where, tf.reshape(key, [-1]))
            self.index_seq.scatter_nd_update(where, tf.reshape(tf.broadcast_to(b.seq[:, None], tf.shape(key)), [-1]))

    def compute_output_shape(self, input_shape):
        n = input_shape[0][0]
        return {k: tf.TensorShape(input_shape[1]) if k == "probabilities" else tf.TensorShape([n])
                for k in OUTPUT_KEYS}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.initial_threshold,
                "global_threshold": self.initial_global_threshold, "min_matches": self.min_matches,
                "global_min_matches": self.global_min_matches,
                "action": self.action, "scope": self.scope, "capacity": self.capacity, "tables": self.tables,
                "bits": self.bits, "ways": self.ways, "max_age": self.max_age, "thumbnail_size": self.thumbnail_size,
                "max_shift": self.max_shift, "shift_step": self.shift_step, "orientations": self.orientations,
                "max_distance": self.max_distance, "seed": self.seed}


class _Batch:
    """What one call knows about its rows."""

    def __init__(self, views, content, owner, user_id, seq):
        self.views, self.content, self.owner, self.user_id, self.seq = views, content, owner, user_id, seq


def _batch_candidates(key: tf.Tensor, b: _Batch, ways: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(row j, sequence number of an earlier row i < j, view of j) wherever a view key of j equals a key row i will
    be stored under; at most the `ways` latest such rows per key, as the index would hold. Linear in the batch:
    the stored keys are sorted once (their low bits replaced by the row number) and each view key is looked up
    by binary search just below its own row."""
    n = tf.shape(key, out_type=tf.int64)[0]
    low = tf.constant(_ROW_BITS, tf.int64)

    def high(k):
        return tf.bitwise.left_shift(tf.bitwise.right_shift(k, low), low)

    stored = key[:, 0]  # N x T
    rows = tf.broadcast_to(tf.range(n)[:, None], tf.shape(stored))
    packed = tf.sort(tf.reshape(high(stored) | rows, [-1]))
    wanted = high(key) | tf.range(n)[:, None, None]  # N x V x T: same key, rows before j
    at = tf.searchsorted(packed, tf.reshape(wanted, [-1]), side="left")
    back = at[:, None] - tf.range(1, ways + 1, dtype=at.dtype)  # the `ways` entries just below
    found = tf.gather(packed, tf.maximum(back, 0))
    same = (back >= 0) & tf.equal(high(found), high(tf.reshape(wanted, [-1]))[:, None])
    shape = tf.concat([tf.shape(key), [ways]], axis=0)
    hit = tf.where(tf.reshape(same, shape))  # M x 4: j, v, t, way
    i = tf.gather_nd(tf.reshape(found - high(found), shape), hit)
    return hit[:, 0], tf.gather(b.seq, i), hit[:, 1]


def _per_row_sorted(rows, content, dist, names, n_rows, k) -> tuple[tf.Tensor, tf.Tensor]:
    """Per row: the k smallest distances to candidates of distinct content (an image re-sent three times is one
    near-duplicate, not three), padded with NO_HISTORY, and the name of the closest candidate ("" if none)."""
    unique, idx = tf.raw_ops.UniqueV2(x=tf.stack([rows, content], axis=1), axis=[0])
    n_unique = tf.shape(unique)[0]
    best = tf.math.unsorted_segment_min(dist, idx, n_unique)
    first = tf.math.unsorted_segment_min(tf.range(tf.shape(idx)[0]), idx, n_unique)
    best_names = tf.gather(names, first)
    urows = unique[:, 0]
    order = tf.argsort(urows, stable=True)
    ragged = tf.RaggedTensor.from_value_rowids(tf.gather(best, order), tf.gather(urows, order), nrows=tf.cast(n_rows, tf.int64))
    ragged_names = tf.RaggedTensor.from_value_rowids(tf.gather(best_names, order), tf.gather(urows, order),
                                                    nrows=tf.cast(n_rows, tf.int64))
    dense = tf.concat([ragged.to_tensor(default_value=NO_HISTORY), tf.fill([n_rows, k], NO_HISTORY)], axis=1)
    top = tf.math.top_k(-dense, k=k)
    dense_names = tf.concat([ragged_names.to_tensor(default_value=""), tf.fill([n_rows, k], "")], axis=1)
    name = tf.gather(dense_names, top.indices[:, 0], batch_dims=1)
    return -top.values, name


def _nothing(scope: str, n: tf.Tensor) -> dict[str, tf.Tensor]:
    prefix = "" if scope == "user" else "global_"
    far = tf.fill([n], NO_HISTORY)
    out = {f"{prefix}min_distance": far, f"{prefix}match_distance": far,
           f"{prefix}distance_alarm": tf.zeros([n], tf.int32), f"{scope}_alarm_": tf.zeros([n], tf.bool)}
    if scope == "global":
        out["matched_user"] = tf.fill([n], "")
    return out


def _mix(x: tf.Tensor) -> tf.Tensor:
    """A 64-bit integer mixer (splitmix64's finaliser, wrapping int64 arithmetic)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(30, tf.int64))) * -4658895280553007687
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(27, tf.int64))) * -7723592293110705685
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(31, tf.int64)))

