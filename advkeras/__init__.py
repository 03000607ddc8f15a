"""advkeras: adversarial risk assessment of Keras image classifiers."""
__version__ = "0.1.0"
