"""The main job: one assessment run over data, model, attacks, defenses and detectors."""
from advkeras.assess.config import default_config, load_config
from advkeras.assess.context import RunContext
from advkeras.assess.run import assess

__all__ = ["RunContext", "assess", "default_config", "load_config"]
