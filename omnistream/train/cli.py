"""`omnistream train RECIPE.py [recipe options]`: run a training recipe file.

A recipe is a Python file with `run(argv: list[str]) -> None` (see recipes/). Recipes resume from their
last checkpoint when run again with the same work folder.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

from omnistream.errors import ConfigError


def load_recipe(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist", param="recipe")
    spec = importlib.util.spec_from_file_location(f"omnistream_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"recipe {path} is not a Python file", param="recipe")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"recipe {path} has no run(argv) function", param="recipe")
    return module


def add_train_arguments(parser) -> None:
    """Arguments of `omnistream train` (the COMMANDS table of omnistream/cli.py)."""
    import argparse

    parser.add_argument("recipe", help="recipe file, e.g. recipes/builtin.py")
    parser.add_argument("recipe_args", nargs=argparse.REMAINDER, help="options passed to the recipe's run()")


def train_command(args) -> int:
    logging.getLogger().setLevel(logging.INFO)
    load_recipe(args.recipe).run(list(args.recipe_args))
    return 0


def train_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: omnistream train RECIPE.py [recipe options]   (recipes: recipes/*.py)")
        return 0 if argv else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_recipe(argv[0]).run(argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(train_main())
