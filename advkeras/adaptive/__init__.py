"""Attacks that know the defense or the detector (adaptive evaluation, Tramer et al. 2020).

`bpda`: differentiate through purifying parts as the identity. `eot`: expected gradient of a randomised
model. `battery`: every attack run against a defended model; its worst case is the defense's figure.
`detectors`: attacks that must fool the classifier and stay under a detector's calibrated threshold.
"""
from advkeras.adaptive.battery import counted, defense_battery
from advkeras.adaptive.detectors import (AdaptiveDetectorResult, DetectorTarget, Differentiable,
                                        adaptive_row, attach_adaptive, attack_detector, calibrated_target,
                                        differentiable_from, joint_square_search, target_for)
from advkeras.adaptive.bpda import StraightThrough, bpda_model, purifier_parts
from advkeras.adaptive.eot import eot_model, is_randomised

__all__ = ["AdaptiveDetectorResult", "DetectorTarget", "Differentiable", "adaptive_row", "attach_adaptive",
           "attack_detector", "calibrated_target", "differentiable_from", "joint_square_search", "target_for", "StraightThrough", "bpda_model", "counted", "defense_battery", "eot_model", "is_randomised",
           "purifier_parts"]
