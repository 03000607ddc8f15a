"""Serving: SavedModel export for TF Serving with the prediction-similarity state, and a REST client."""
from advkeras.serving.client import ServingClient, ServingError
from advkeras.serving.export import export_saved_model, history_state, load_history, save_history
from advkeras.serving.layout import next_version_dir, versions
from advkeras.serving.signature import CORE_OUTPUTS, ServingModule, serving_module

__all__ = ["CORE_OUTPUTS", "ServingClient", "ServingError", "ServingModule", "export_saved_model", "history_state",
           "load_history", "next_version_dir", "save_history", "serving_module", "versions"]
