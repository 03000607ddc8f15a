"""Explanations: guided backprop (native + iNNvestigate worker), GradCAM, activation graphs."""
from advkeras.explain.flat_model import flat_model, leaf_layers  # noqa: E402,F401
from advkeras.explain.guided_backprop import guided_backprop, guided_model, response_function  # noqa: E402,F401
from advkeras.explain.innvestigate_worker import InnvestigateWorker, WorkerError  # noqa: E402,F401
from advkeras.explain.gradcam import flat_clone, gradcam_neurons  # noqa: E402,F401
