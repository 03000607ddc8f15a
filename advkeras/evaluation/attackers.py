"""Attackers who know a stateful detector is watching: named strategies for the query-traffic simulation.

Each strategy wraps the defended model as the attack's model (every model call of the attack is a query of
each attack process, as with `as_user`) and adds what a real attacker does for free or for a price:

- `flush` (history flushing): k unrelated cover queries under the attacker's own id before each attack query,
  so a bounded per-user history forgets the earlier attack queries. Price: k extra queries per query.
- `drip` (slow drip): k queries of *other* users' benign traffic between two attack queries of a process
  (the attack spread through a busy service); same effect on a history bounded in time or size.
- `new_id_every` (many ids): a new user id every k calls (1 = every query). Price: ids.
- `blind` (query blinding): transforms that keep the model's answer: brightness, contrast, colour,
  orientation (the 8 rotations/mirrors), shift (up to 2 px), noise (+-16/255); applied to every query.
- `adaptive` (OARS-style, Feng et al. CCS 2023): the attacker sees which of its queries raised the alarm (as
  it would from a rejection) and, after each, strengthens its blinding (x1, x2, x3) and moves to a new id.
  Stronger than OARS in what it observes (every alarm, also with action="flag"), weaker in search: it does
  not resample rejected queries.

Counters per process (attack queries, alarms on attack queries, first alarm, cover queries paid, ids used)
live in variables, so they count inside compiled attacks too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from advkeras.defenses.prediction_similarity.model import AsUsers, image_shape
from advkeras.errors import InputError

BLINDING = ("brightness", "contrast", "colour", "orientation", "shift", "noise")


@dataclass(frozen=True)
class Strategy:
    """What an attack process does besides the attack itself (see the module docstring)."""

    flush: int = 0
    drip: int = 0
    new_id_every: int = 0  # 0: one id for the whole attack
    blind: tuple[str, ...] = field(default_factory=tuple)
    adaptive: bool = False

    def __post_init__(self):
        unknown = set(self.blind) - set(BLINDING)
        if unknown:
            raise InputError(f"unknown blinding transform(s) {sorted(unknown)}; choose from {', '.join(BLINDING)}.")
        if min(self.flush, self.drip, self.new_id_every) < 0:
            raise InputError("flush, drip and new_id_every must be >= 0.")

    @classmethod
    def from_spec(cls, spec: dict | None) -> "Strategy":
        spec = dict(spec or {})
        unknown = set(spec) - {"flush", "drip", "new_id_every", "blind", "adaptive"}
        if unknown:
            raise InputError(f"unknown strategy key(s) {sorted(unknown)}; use flush, drip, new_id_every, blind, "
                             "adaptive.")
        blind = spec.get("blind", ())
        return cls(int(spec.get("flush", 0)), int(spec.get("drip", 0)), int(spec.get("new_id_every", 0)),
                   tuple([blind] if isinstance(blind, str) else blind), bool(spec.get("adaptive", False)))

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "blind": list(self.blind)}


def blind(x: tf.Tensor, names: tuple[str, ...], strength: tf.Tensor, seed: int) -> tf.Tensor:
    """Apply the named transforms to a batch; `strength` (N,) scales each row's amplitude (1 = the defaults)."""
    n = tf.shape(x)[0]
    s = tf.reshape(tf.cast(strength, tf.float32), [-1, 1, 1, 1])

    def uniform(shape, lo, hi, k):
        return tf.random.uniform(shape, lo, hi, seed=seed + k)

    if "orientation" in names:  # one of the 8 per call (tf.image.rot90 takes one k for the whole batch)
        k = tf.random.uniform([], 0, 4, tf.int32, seed=seed + 1)
        x = tf.image.rot90(x, k)
        x = tf.cond(uniform([], 0.0, 1.0, 2) < 0.5, lambda: x[:, :, ::-1], lambda: x)
    if "shift" in names:  # up to 2 px (x strength) per call, circular
        most = tf.cast(2 * tf.reduce_max(strength), tf.int32)
        x = tf.roll(x, tf.random.uniform([2], -most, most + 1, tf.int32, seed=seed + 3), axis=[1, 2])
    if "contrast" in names:
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * (1.0 + s * uniform([n, 1, 1, 1], -0.2, 0.2, 4)) + mean
    if "brightness" in names:
        x = x + s * uniform([n, 1, 1, 1], -0.06, 0.06, 5)
    if "colour" in names:
        x = x + s * uniform([n, 1, 1, tf.shape(x)[-1]], -0.06, 0.06, 6)
    if "noise" in names:
        x = x + s * uniform(tf.shape(x), -16 / 255, 16 / 255, 7)
    return tf.clip_by_value(x, 0.0, 1.0)


class _Attackers(AsUsers):
    """Attack processes querying the defended model under a strategy; returns log-probabilities as logits.
    Adds to `AsUsers`'s counters the cover queries paid, the ids used and the adaptive attacker's level."""

    def __init__(self, defended: tf.keras.Model, ids: list[str], strategy: Strategy, cover: np.ndarray | None,
                 seed: int = 0, **kwargs):
        super().__init__(defended, ids, **kwargs)
        self.strategy, self.seed = strategy, int(seed)
        if (strategy.flush or strategy.drip) and (cover is None or not len(cover)):
            raise InputError("flush and drip strategies need cover images (benign patches to send).")
        self.cover = None if cover is None else tf.constant(cover, tf.float32)

    def build(self, input_shape) -> None:
        super().build(input_shape)  # calls, queries, alarms, first_alarm

        def counter(name, value=0):
            return self.add_weight(name=name, shape=(len(self.ids),), dtype=tf.int64, trainable=False,
                                   initializer=tf.keras.initializers.Constant(value))

        self.process_cover, self.process_ids = counter("cover"), counter("ids", 1)
        self.level = counter("level")  # adaptive: alarms seen so far

    def call(self, image):
        st, n, p = self.strategy, tf.shape(image)[0], len(self.ids)
        process = tf.range(n) % p
        level = tf.gather(self.level, process)
        ids = tf.gather(tf.constant(self.ids), process)
        epoch = self.calls // st.new_id_every if st.new_id_every else tf.zeros_like(self.calls)
        ids = ids + "~" + tf.strings.as_string(epoch)
        if st.adaptive:
            ids = ids + "~r" + tf.strings.as_string(level)
        x = image
        if st.blind or st.adaptive:
            names = st.blind or BLINDING
            strength = 1.0 + tf.cast(tf.minimum(level, 2), tf.float32) if st.adaptive else tf.ones([n])
            x = blind(x, names, strength, self.seed)
        if st.flush:  # requests of their own before the attack query (tf.function keeps the order)
            self._send_cover(st.flush, lambda c: ids)
        if st.drip:
            calls = tf.strings.as_string(self.calls)
            self._send_cover(st.drip, lambda c: "bystander-" + calls + "-" + tf.strings.as_string(c) + "-"
                             + tf.strings.as_string(tf.range(n)))
        out = self.defended({"image": x, "user_id": ids}, training=False)
        alarm = tf.cast(out["alarm"], tf.int64)
        self._count_paid(process, alarm, epoch)
        return tf.math.log(tf.maximum(out["probabilities"], 1e-12))

    def _send_cover(self, rounds: int, names) -> None:
        """`rounds` requests of one cover query per process each (random benign patches), ids from `names(c)`:
        as many requests as a real attacker would send, so no request is unrealistically large."""
        def send(c):
            ids = names(c)
            idx = tf.random.uniform(tf.shape(ids), 0, tf.shape(self.cover)[0], tf.int32, seed=self.seed + 11)
            self.defended({"image": tf.gather(self.cover, idx), "user_id": ids}, training=False)
            return (c + 1,)

        tf.while_loop(lambda c: c < rounds, send, (tf.constant(0),))

    def _count_paid(self, process, alarm, epoch) -> None:
        """The common counters, then what the strategy paid, and the adaptive attacker's escalation."""
        self._count(process, alarm)
        ones = tf.ones_like(alarm)
        self.process_cover.scatter_add(tf.IndexedSlices(ones * (self.strategy.flush + self.strategy.drip), process))
        # every new epoch and every alarm of the adaptive attacker starts a new id (both at once: counted twice)
        ids_now = epoch + 1 + (tf.gather(self.level, process) + alarm if self.strategy.adaptive else 0)
        self.process_ids.scatter_max(tf.IndexedSlices(ids_now, process))
        if self.strategy.adaptive:
            self.level.scatter_add(tf.IndexedSlices(alarm, process))
        self.calls.assign_add(1)

    def process_stats(self) -> dict[str, np.ndarray]:
        """Per process: attack queries, alarmed attack queries, first alarmed query (0 = never), cover queries
        paid, user ids used (an upper bound for the adaptive attacker)."""
        return {**super().process_stats(), "cover": self.process_cover.numpy(), "ids": self.process_ids.numpy()}


def attacker_model(defended: tf.keras.Model, ids: list[str], strategy: Strategy, *,
                   cover: np.ndarray | None = None, seed: int = 0) -> tf.keras.Model:
    """The defended model as `len(ids)` attack processes following `strategy` see it: image -> logits.
    Counters: `attacker_model(...).get_layer("as_user").process_stats()`."""
    if not ids:
        raise InputError("give at least one attacker id.")
    image = tf.keras.Input(image_shape(defended))
    return tf.keras.Model(image, _Attackers(defended, ids, strategy, cover, seed, name="as_user")(image),
                          name="attackers")
