"""Options every subcommand shares, and the bridge from advkeras errors to clean CLI messages."""
from __future__ import annotations

import functools
import logging
from typing import Callable

import click

from advkeras.errors import AdvKerasError

# Option types that refuse impossible values at the command line, before any work starts.
COUNT = click.IntRange(min=1)
POSITIVE = click.FloatRange(min=0, min_open=True)
RATE = click.FloatRange(0, 1, min_open=True, max_open=True)
LINF_EPS = click.FloatRange(0, 1, min_open=True)


def common_options(default_out: str) -> Callable:
    """--seed, --out and --force on a subcommand; errors become one-line messages, not tracebacks."""

    def decorate(fn: Callable) -> Callable:
        @click.option("--force", is_flag=True, help="Replace --out if it already holds results.")
        @click.option("--out", type=click.Path(file_okay=False), default=default_out, show_default=True,
                      help="Output folder.")
        @click.option("--seed", type=int, default=0, show_default=True, help="Seed for all randomness.")
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            try:
                return fn(*args, **kwargs)
            except (AdvKerasError, FileExistsError) as exc:
                raise click.ClickException(str(exc)) from exc

        return wrapper

    return decorate


def deterministic_option(fn: Callable) -> Callable:
    """--deterministic/--no-deterministic (on by default): TensorFlow's op determinism is turned on
    before any work, so the same --seed on the same machine gives the same weights and metrics; the
    command gets whether it is on, to record it."""

    @click.option("--deterministic/--no-deterministic", default=True, show_default=True,
                  help="Deterministic TF ops: the same --seed gives the same numbers (--no-deterministic: faster).")
    @functools.wraps(fn)
    def wrapper(*args, deterministic: bool, **kwargs):
        from advkeras.seeding import deterministic_ops  # imports TensorFlow: only once the command runs

        return fn(*args, deterministic=deterministic_ops(deterministic), **kwargs)

    return wrapper


def confirm_overwrite(question: str) -> bool:
    """Ask on a terminal; never assume yes when nobody can answer."""
    return click.get_text_stream("stdin").isatty() and click.confirm(question, default=False)
