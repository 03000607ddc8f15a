"""Detectors of adversarial inputs: relevant neurons, feature responses, encoder disagreement, peers."""
