"""The `advkeras` command: one subcommand per module in this package."""
from __future__ import annotations

import os

# Keep TensorFlow's C++ start-up chatter out of the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from advkeras import __version__  # noqa: E402
from advkeras.cli.assess import assess  # noqa: E402
from advkeras.cli.attack import attack  # noqa: E402
from advkeras.cli.defend import defend  # noqa: E402
from advkeras.cli.detect import detect  # noqa: E402
from advkeras.cli.export import export  # noqa: E402
from advkeras.cli.train import train  # noqa: E402
from advkeras.cli.visualize import visualize  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="advkeras")
def main() -> None:
    """Adversarial risk assessment of Keras image classifiers."""


for command in (train, assess, attack, export, defend, detect, visualize):
    main.add_command(command)
