"""Model zoo (vgg16, vgg_mini, lenet), composition from `cnn` + `dnn` parts, checks, training, I/O."""
from advkeras.errors import ModelError
from advkeras.models.checks import check_images, check_logits
from advkeras.models.io import load_model, save_model
from advkeras.models.layers import CaffePreprocess, Jitter
from advkeras.models.parts import activation_model, compose, get_part, get_parts, layer_names
from advkeras.models.training import (TrainResult, evaluate_classifier, fit_on_dataset, predict_logits,
                                       split_dataset, train_classifier)
from advkeras.models.zoo import BACKBONES, build_classifier, build_dnn
from advkeras.models.transfer import frozen_feature_classifier, pretrain_cnn, resize_cnn

__all__ = ["BACKBONES", "CaffePreprocess", "Jitter", "ModelError", "TrainResult", "activation_model", "build_classifier",
           "build_dnn", "check_images", "check_logits", "compose", "evaluate_classifier", "fit_on_dataset", "frozen_feature_classifier", "get_part", "get_parts",
           "layer_names", "load_model", "predict_logits", "pretrain_cnn", "resize_cnn", "save_model", "split_dataset", "train_classifier"]
