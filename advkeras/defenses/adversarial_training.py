"""Adversarial training, two forms.

(a) `adversarial_retraining`, the paper's: adversarials of the training set are made on the original
    model (FGSM/BIM/PGD), added to the training data with their true labels, and a copy is retrained.
(b) `pgd_training`, Madry et al.'s online form: every batch is replaced (or joined) by PGD
    adversarials of the model being trained, made by the compiled native PGD inside `train_step`,
    so it runs under any `tf.distribute` strategy (MirroredStrategy, MultiWorkerMirroredStrategy).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from advkeras.attacks import generate, linf_pgd
from advkeras.data.dataset import Dataset
from advkeras.defenses.autoencoders.fitting import EpochBar
from advkeras.defenses.cloning import clone_classifier, reseed_trainable
from advkeras.defenses.result import DefenseResult
from advkeras.errors import InputError
from advkeras.models import check_images, check_logits, train_classifier
from advkeras.models.training import make_pipeline
from advkeras.seeding import derive_seed, preserved_global_rng, seed_random_layers


@preserved_global_rng()
def adversarial_retraining(model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *,
                           attacks: Sequence[str] = ("fgsm", "bim", "pgd"), eps: float = 8 / 255,
                           backend: str = "native", attack_params: Mapping[str, dict] | None = None,
                           share: float = 1.0, epochs: int = 5, batch_size: int = 64,
                           learning_rate: float = 5e-4, from_scratch: bool = False, augment: bool = False,
                           patience: int = 3, known: Dataset | None = None, seed: int = 0) -> DefenseResult:
    """Retrain a copy of `model` on the training set plus its adversarials (made on the original model).

    `known`: adversarials the user already holds (e.g. caught in production, or the defense paper's
    "initial adversarials", which it retrained on directly), added as they are with their true labels.
    A model retrained on them and scored on them is scored on examples it has seen; say so when reporting.

    The copy starts from the original weights (fine-tuning) unless `from_scratch`. Every adversarial
    is added, successful or not, labelled with its true class. `attack_params` maps an attack name
    to its parameters (e.g. {"pgd": {"steps": 10}}). Each attack perturbs a random `share` of the
    training images (1.0: all of them; 1/3 with three attacks keeps the cost of one pass).
    """
    check_logits(model)
    if not attacks:
        raise InputError("attacks is empty; give at least one attack name, e.g. ('fgsm', 'bim', 'pgd').")
    if not 0 < share <= 1:
        raise InputError(f"share must be in (0, 1], got {share}.")
    xs, ys, added = [train.x], [train.y], {}
    rng = np.random.default_rng(seed)
    for i, name in enumerate(attacks):
        idx = np.sort(rng.permutation(len(train))[:max(1, round(share * len(train)))])
        res = generate(model, train.x[idx], train.y[idx], name, eps=eps, backend=backend, seed=seed + 1000 * i,
                       **(attack_params or {}).get(name, {}))
        xs.append(res.clipped)
        ys.append(train.y[idx])
        added[name] = {"n": int(len(res.x)), "success_rate": res.success_rate}
    if known is not None and len(known):
        check_images(known.x, model, name="known adversarials")
        xs.append(known.x)
        ys.append(known.y)
        added["known"] = {"n": int(len(known))}
    augmented = Dataset(np.concatenate(xs), np.concatenate(ys), None, train.class_names, train.name)
    clone = clone_classifier(model, copy_weights=not from_scratch, name=f"{model.name}_adv_trained")
    if from_scratch:  # fresh initial weights from the seed (a derived one: not the original's own start)
        reseed_trainable(clone, derive_seed(seed, "from-scratch"))
    result = train_classifier(clone, augmented, val, epochs=epochs, batch_size=batch_size,
                              learning_rate=learning_rate, patience=patience, augment=augment, seed=seed)
    info = {"form": "retraining", "attacks": added, "share": share, "eps": eps, "backend": backend,
            "from_scratch": from_scratch, "n_train": len(augmented), "epochs_run": len(result.history["loss"])}
    return DefenseResult("adversarial-training", clone, info, result.history)


class PGDTrainer(tf.keras.Model):
    """Wraps a classifier; `train_step` trains it on PGD adversarials of each batch (Madry et al.).

    `clean_weight` in [0, 1] mixes in the clean loss (0: adversarials only, as Madry). Only the
    wrapped classifier, a plain functional model, is returned to the user and saved. The random
    starts are drawn statelessly from `seed`, the step and the replica, so they differ per batch and
    repeat per run.
    """

    def __init__(self, classifier: tf.keras.Model, *, eps: float, steps: int, step_size: float,
                 clean_weight: float = 0.0, random_start: bool = True, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.eps, self.steps, self.step_size, self.clean_weight = float(eps), int(steps), float(step_size), clean_weight
        self.random_start, self.seed = random_start, int(seed)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def train_step(self, data):
        x, y = data
        x_adv = linf_pgd(self.classifier, x, y, self.eps, steps=self.steps, step_size=self.step_size,
                         random_start=self.random_start, seed=self._step_seed())
        with tf.GradientTape() as tape:
            logits_adv = self.classifier(x_adv, training=True)
            loss = self.compiled_loss(y, logits_adv)
            if self.clean_weight:
                logits = self.classifier(x, training=True)
                loss = (1 - self.clean_weight) * loss + self.clean_weight * self.compiled_loss(y, logits)
            if self.classifier.losses:  # weight penalties count once, whatever the clean/adversarial mix
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.classifier.losses))
        self.optimizer.minimize(loss, self.classifier.trainable_variables, tape=tape)
        self.compiled_metrics.update_state(y, logits_adv)
        return {"loss": loss, **{m.name: m.result() for m in self.metrics if m.name != "loss"}}

    def _step_seed(self) -> tf.Tensor:
        """One int64 seed per (seed, training step, replica), drawn statelessly."""
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        draw = tf.cast(self.optimizer.iterations, tf.int64) * self.distribute_strategy.num_replicas_in_sync + replica
        return tf.random.stateless_uniform([], tf.stack([tf.constant(self.seed, tf.int64), draw]), minval=None,
                                           maxval=None, dtype=tf.int64)


@preserved_global_rng()
def pgd_training(model: tf.keras.Model, train: Dataset | tf.data.Dataset, val: Dataset | None = None, *,
                 eps: float = 8 / 255, steps: int = 7, step_size: float | None = None, clean_weight: float = 0.0,
                 epochs: int = 5, batch_size: int = 64, learning_rate: float = 5e-4, from_scratch: bool = False,
                 random_start: bool = True, steps_per_epoch: int | None = None,
                 strategy: tf.distribute.Strategy | None = None, seed: int = 0,
                 progress: bool = True) -> DefenseResult:
    """Online PGD adversarial training of a copy of `model`, optionally under a `tf.distribute` strategy.

    `batch_size` is the global batch (split across replicas). `train` may be a Dataset or a
    batched `tf.data.Dataset` of (image, label) (then `batch_size` is not used). The copy is
    made inside `strategy.scope()`, so its variables are mirrored; the returned model is a plain
    functional cnn -> dnn classifier. `random_start=False` makes the attack deterministic (tests).
    """
    check_logits(model)
    if not 0 < eps <= 1 or steps < 1 or not 0 <= clean_weight <= 1:
        raise InputError(f"need 0 < eps <= 1, steps >= 1 and clean_weight in [0, 1]; got eps={eps}, "
                         f"steps={steps}, clean_weight={clean_weight}.")
    step_size = 2.5 * eps / steps if step_size is None else step_size  # Madry et al.'s choice
    if isinstance(train, Dataset):
        check_images(train.x, model, name="training images")
        pipe = make_pipeline(train, batch_size=batch_size, shuffle=True, augment=False, seed=seed)
    else:
        pipe = train
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        clone = clone_classifier(model, copy_weights=not from_scratch, name=f"{model.name}_pgd_trained")
        if from_scratch:  # fresh initial weights from the seed (a derived one: not the original's own start)
            reseed_trainable(clone, derive_seed(seed, "from-scratch"))
        seed_random_layers(clone, seed)
        trainer = PGDTrainer(clone, eps=eps, steps=steps, step_size=step_size, clean_weight=clean_weight,
                             random_start=random_start, seed=seed)
        trainer.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    val_pipe = None
    if val is not None and len(val):
        check_images(val.x, model, name="validation images")
        val_pipe = make_pipeline(val, batch_size=batch_size, shuffle=False, augment=False, seed=seed)
    callbacks = [EpochBar(epochs, "PGD training")] if progress else []
    hist = trainer.fit(pipe, validation_data=val_pipe, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                       callbacks=callbacks)
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    info = {"form": "online-pgd", "eps": eps, "steps": steps, "random_start": random_start, "step_size": step_size,
            "clean_weight": clean_weight, "from_scratch": from_scratch, "strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync), "epochs_run": len(history["loss"])}
    return DefenseResult("adversarial-training", clone, info, history)
