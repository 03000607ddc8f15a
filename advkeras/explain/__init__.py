"""Explanations: guided backprop (native + iNNvestigate worker), GradCAM, activation graphs."""
