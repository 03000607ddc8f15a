"""Defenses: adversarial training, autoencoders (middle, encoder, initial), prediction similarity."""
