"""The defended model: classifier -> softmax -> `PredictionSimilarity`, with image and user id as inputs."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import tensorflow as tf

from advkeras.defenses.prediction_similarity.index import IndexedPredictionSimilarity
from advkeras.defenses.prediction_similarity.layer import PredictionSimilarity, check_choice
from advkeras.errors import InputError, ModelError
from advkeras.models.checks import check_images, check_logits

SERVING_KEYS = ("probabilities", "label", "alarm", "adversarial_probability", "min_distance")
STORES = {"index": IndexedPredictionSimilarity, "ring": PredictionSimilarity}
SimilarityLayer = (IndexedPredictionSimilarity, PredictionSimilarity)


def build_defended_model(classifier: tf.keras.Model, *, name: str | None = None, store: str = "index",
                         **layer_kwargs: Any) -> tf.keras.Model:
    """A functional model {"image", "user_id"} -> dict of the similarity layer's outputs.

    The classifier (logits out) is used as is, not copied: its weights are shared. `store="index"` (default)
    uses `IndexedPredictionSimilarity` (whole recent history, blinding-resistant views, per-user and cross-user
    scopes); `store="ring"` the earlier `PredictionSimilarity` (each user's last `history` queries).
    `layer_kwargs` go to that layer (threshold, action, scope, capacity, ... or metric, n_slots, history, ...).
    """
    check_logits(classifier)
    check_choice("store", store, tuple(STORES))
    if store == "index" and {"metric", "n_slots", "history", "representation"} & set(layer_kwargs):
        raise InputError(f"{sorted({'metric', 'n_slots', 'history', 'representation'} & set(layer_kwargs))} "
                         "configure the ring store; pass store='ring' with them, or drop them for the index store.")
    image = tf.keras.Input(classifier.input_shape[1:], name="image")
    user_id = tf.keras.Input((), dtype=tf.string, name="user_id")
    probs = tf.keras.layers.Softmax(name="probabilities")(classifier(image))
    outputs = STORES[store](name="prediction_similarity", **layer_kwargs)([image, probs, user_id])
    return tf.keras.Model({"image": image, "user_id": user_id}, outputs,
                          name=name or f"{classifier.name}_prediction_similarity")


def similarity_layer(defended: tf.keras.Model) -> IndexedPredictionSimilarity | PredictionSimilarity:
    """The prediction-similarity layer of a defended model."""
    for layer in defended.layers:
        if isinstance(layer, SimilarityLayer):
            return layer
    raise ModelError(f"model {defended.name!r} has no PredictionSimilarity layer; build it with "
                     "build_defended_model(classifier).")


def image_shape(defended: tf.keras.Model) -> tuple[int, ...]:
    """H x W x C of the defended model's image input (read from its input layer, not its call history)."""
    return tuple(defended.get_layer("image").output.shape[1:])


def serving_function(defended: tf.keras.Model,
                     keys: tuple[str, ...] = SERVING_KEYS) -> tf.types.experimental.GenericFunction:
    """A `tf.function` (image float32 NxHxWxC, user_id string N) -> dict of `keys`, for SavedModel export:

    `tf.saved_model.save(defended, path, signatures={"serving_default": serving_function(defended)})`.
    """
    shape = [None, *image_shape(defended)]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image"),
                                  tf.TensorSpec([None], tf.string, name="user_id")])
    def serve(image, user_id):
        out = defended({"image": image, "user_id": user_id}, training=False)
        return {k: out[k] for k in keys}

    return serve


def query(defended: tf.keras.Model, x: np.ndarray, user_id: str | list[str] | np.ndarray) -> dict[str, np.ndarray]:
    """Send images as queries of one user (a string) or of one user per image; numpy outputs.

    Runs a compiled function (traced once per model), so each call costs about one graph execution.
    """
    x = check_images(x, None)
    ids = np.full(len(x), user_id, dtype=object) if isinstance(user_id, str) else np.asarray(user_id, dtype=object)
    if ids.shape != (len(x),):
        raise InputError(f"user_id must be one string or one per image; got {ids.shape} for {len(x)} images.")
    fn = getattr(defended, "_advkeras_query", None)
    if fn is None:
        fn = serving_function(defended, similarity_layer(defended).output_keys)
        defended._advkeras_query = fn  # noqa: SLF001  (a cache, not tracked state)
    out = fn(tf.constant(x), tf.constant(ids.astype(str)))
    return {k: v.numpy() for k, v in out.items()}


class AsUsers(tf.keras.layers.Layer):
    """Queries the defended model as attacker processes and returns log-probabilities as logits.

    Row i of every call is a query of process i % P (user id `ids[i % P]`, or with `rotate_ids` a fresh id
    per call). Per-process query, alarm and first-alarm counters are kept in variables, so they are
    counted inside compiled attacks too.
    """

    def __init__(self, defended: tf.keras.Model, ids: list[str], rotate_ids: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.defended, self.ids, self.rotate_ids = defended, list(ids), rotate_ids

    def build(self, input_shape) -> None:
        p = len(self.ids)
        zeros = tf.keras.initializers.Zeros()
        self.calls = self.add_weight(name="calls", shape=(), dtype=tf.int64, initializer=zeros, trainable=False)
        self.process_queries = self.add_weight(name="queries", shape=(p,), dtype=tf.int64, initializer=zeros,
                                               trainable=False)
        self.process_alarms = self.add_weight(name="alarms", shape=(p,), dtype=tf.int64, initializer=zeros,
                                              trainable=False)
        self.process_first_alarm = self.add_weight(name="first_alarm", shape=(p,), dtype=tf.int64,
                                                   initializer=tf.keras.initializers.Constant(0), trainable=False)
        super().build(input_shape)

    def call(self, image):
        n, p = tf.shape(image)[0], len(self.ids)
        process = tf.range(n) % p
        ids = tf.gather(tf.constant(self.ids), process)
        if self.rotate_ids:
            ids = ids + "~" + tf.strings.as_string(self.calls)
        self.calls.assign_add(1)
        out = self.defended({"image": image, "user_id": ids}, training=False)
        self._count(process, tf.cast(out["alarm"], tf.int64))
        return tf.math.log(tf.maximum(out["probabilities"], 1e-12))

    def _count(self, process: tf.Tensor, alarm: tf.Tensor) -> None:
        """Add one query per row to its process, its alarm, and the number of its first alarmed query."""
        ordinal = tf.gather(self.process_queries, process) + 1
        self.process_queries.scatter_add(tf.IndexedSlices(tf.ones_like(ordinal), process))
        self.process_alarms.scatter_add(tf.IndexedSlices(alarm, process))
        # first alarm: the query number of the first alarmed query (0 = none yet)
        first_now = tf.where((alarm > 0) & tf.equal(tf.gather(self.process_first_alarm, process), 0), ordinal, 0)
        self.process_first_alarm.scatter_max(tf.IndexedSlices(first_now, process))

    def process_stats(self) -> dict[str, np.ndarray]:
        """Per process: queries sent, queries alarmed, number of the first alarmed query (0 = never)."""
        return {"queries": self.process_queries.numpy(), "alarms": self.process_alarms.numpy(),
                "first_alarm": self.process_first_alarm.numpy()}


def as_user(defended: tf.keras.Model, user_id: str | list[str], *, rotate_ids: bool = False,
            transform: tf.keras.layers.Layer | None = None) -> tf.keras.Model:
    """The defended model seen by attacker processes: image -> logits, every call a query.

    Give it to an attack (`advkeras.attacks.generate`, one image per process, batch_size >= processes) so
    each model call of the attack is a query that the defense sees and, with action="flip", answers
    falsely. Row i of a call is a query of process i % P with user id `user_id[i % P]` (a list) or
    `user_id` (one string). `rotate_ids` sends every call under a new id (one attacker, many ids).
    `transform` (a layer applied to each query before it is sent) models an attacker who perturbs queries
    to dodge similarity. Per-process counters: `as_user(...).get_layer("as_user").process_stats()`.
    """
    ids = [user_id] if isinstance(user_id, str) else list(user_id)
    if not ids:
        raise InputError("give at least one user id.")
    image = tf.keras.Input(image_shape(defended))
    sent = image if transform is None else transform(image)
    out = AsUsers(defended, ids, rotate_ids, name="as_user")(sent)
    return tf.keras.Model(image, out, name="as_" + re.sub(r"[^A-Za-z0-9_.-]", "_", ids[0]))
