"""The serving module: classifier + prediction similarity (+ optional detectors) behind one signature."""
from __future__ import annotations

from typing import Callable, Mapping

import tensorflow as tf

from advkeras.defenses.prediction_similarity import IndexedPredictionSimilarity, PredictionSimilarity, similarity_layer
from advkeras.errors import ModelError
from advkeras.models.checks import check_logits

# Outputs every export has; detectors add theirs.
CORE_OUTPUTS = ("probabilities", "label", "alarm", "adversarial_probability", "min_distance")
# What the index store adds: which scope alarmed, and the other user a cross-user match came from.
INDEX_OUTPUTS = ("user_alarm", "global_alarm", "global_min_distance", "matched_user")


class ServingModule(tf.Module):
    """What `tf.saved_model.save` writes: the model, the similarity state and the `serving_default` function.

    `detectors` maps an output name to a Keras model or a `tf.function` image -> per-image score (N,)
    (or a tuple whose first element is that score), computed on the request's images, e.g.
    `FeatureResponseDetector(model).fit(x).entropy_function()` for the native feature-response entropy. `encoder_model` (image -> logits, the
    encoder defense) adds `encoder_disagreement`: True when its class differs from the classifier's own
    (taken before any `flip`, so the flag reflects the model, not the similarity answer).
    """

    def __init__(self, classifier: tf.keras.Model, similarity: IndexedPredictionSimilarity | PredictionSimilarity, *,
                 encoder_model: tf.keras.Model | None = None,
                 detectors: Mapping[str, Callable] | None = None):
        super().__init__(name="advkeras_serving")
        check_logits(classifier)
        self.classifier = classifier
        self.similarity = similarity
        self.encoder_model = encoder_model
        self.detectors = dict(detectors or {})
        # Named handles on the similarity state, so a loaded SavedModel exposes them as `loaded.state`.
        self.state = {w.name.split("/")[-1].split(":")[0]: w for w in similarity.weights}
        self.input_shape = tuple(int(d) for d in classifier.input_shape[1:])
        self.core_outputs = CORE_OUTPUTS + (INDEX_OUTPUTS if isinstance(similarity, IndexedPredictionSimilarity) else ())
        self.output_names = self.core_outputs + (("encoder_disagreement",) if encoder_model is not None else ()) \
            + tuple(self.detectors)
        # Image dims are left open in the signature so a wrong size reaches our check, whose message says
        # what is expected, instead of a generic shape mismatch.
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, None, None, None], tf.float32, name="image"),
            tf.TensorSpec([None], tf.string, name="user_id")])

    def _serve(self, image: tf.Tensor, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        h, w, c = self.input_shape
        checks = [
            tf.debugging.assert_equal(tf.shape(image)[1:], tf.constant([h, w, c]),
                                      message=f"image must be a batch N x {h} x {w} x {c} (float32, channels last)"),
            tf.debugging.assert_equal(tf.shape(user_id)[0], tf.shape(image)[0],
                                      message="user_id must hold one string per image"),
            tf.debugging.assert_greater_equal(tf.reduce_min(image), 0.0, message="image values must be in [0, 1]"),
            tf.debugging.assert_less_equal(tf.reduce_max(image), 1.0, message="image values must be in [0, 1]"),
        ]
        # Both inputs pass through the checks: the similarity counters depend on user_id alone, and a
        # refused request must not be recorded.
        with tf.control_dependencies(checks):
            image = tf.ensure_shape(tf.identity(image), [None, h, w, c])
            user_id = tf.identity(user_id)
        logits = self.classifier(image, training=False)
        probs = tf.nn.softmax(logits)
        out = self.similarity([image, probs, user_id])
        result = {k: out[k] for k in self.core_outputs}
        if self.encoder_model is not None:
            own = tf.argmax(logits, axis=1)
            result["encoder_disagreement"] = tf.not_equal(tf.argmax(self.encoder_model(image, training=False),
                                                                    axis=1), own)
        for name, det in self.detectors.items():
            score = det(image, training=False) if isinstance(det, tf.keras.Model) else det(image)
            if isinstance(score, (tuple, list)):  # e.g. FeatureResponseDetector.entropy_function: (score, logits)
                score = score[0]
            result[name] = tf.reshape(score, [-1])
        return result


def serving_module(defended_or_classifier: tf.keras.Model, **kwargs) -> ServingModule:
    """Build the serving module from a defended model (classifier + its PredictionSimilarity layer, as made
    by `build_defended_model`), reusing its layer and therefore its calibrated threshold and history."""
    layer = similarity_layer(defended_or_classifier)
    classifiers = [lay for lay in defended_or_classifier.layers if isinstance(lay, tf.keras.Model)]
    if len(classifiers) != 1:
        raise ModelError("the defended model must hold exactly one classifier sub-model; build it with "
                         "advkeras.defenses.prediction_similarity.build_defended_model(classifier).")
    return ServingModule(classifiers[0], layer, **kwargs)
