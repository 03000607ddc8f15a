"""Relevant-neuron detector (Granda, Tuytelaars & Oramas, 2020): neuron descriptors, mu-Lasso
selection of class-relevant neurons, random-forest detection, KDE views."""
from advkeras.detectors.relevant_neurons.descriptors import NeuronDescriptors, neuron_layers, split_prediction
from advkeras.detectors.relevant_neurons.detector import RelevantNeuronDetector
from advkeras.detectors.relevant_neurons.mu_lasso import MuLassoResult, mu_lasso, project_l1_ball, relevant_mask
from advkeras.detectors.relevant_neurons.neuron_sets import SET_NAMES, RelevantNeuronSets

__all__ = ["MuLassoResult", "NeuronDescriptors", "RelevantNeuronDetector", "RelevantNeuronSets", "SET_NAMES",
           "mu_lasso", "neuron_layers", "project_l1_ball", "relevant_mask", "split_prediction"]
