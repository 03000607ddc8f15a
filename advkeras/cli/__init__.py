"""The `advkeras` command: one subcommand per module in this package."""
from __future__ import annotations

import os
import sys

# TensorFlow prints its C++ start-up chatter (cuDNN/cuFFT/cuBLAS "Unable to register factory", CPU
# instruction notes) when it is imported, before any option is parsed: decide from argv, and let a
# TF_CPP_MIN_LOG_LEVEL the user set win. `advkeras --verbose ...` shows it.
VERBOSE = "--verbose" in sys.argv[1:]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if VERBOSE else "3")

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
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up and runtime messages.")
def main(verbose: bool) -> None:
    """Adversarial risk assessment of Keras image classifiers."""
    if not verbose:
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # Python-side TF warnings (retracing notes) unless asked for


for command in (train, assess, attack, export, defend, detect, visualize):
    main.add_command(command)
