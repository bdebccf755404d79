"""Name-keyed registry of run modes: `config.mode` -> `run(config, workdir, writer)`.

Entries are import paths, so that validating a config (which checks `config.mode` against
`MODES`) imports nothing heavy; the mode's module is imported only when it runs.
"""

from __future__ import annotations

import importlib
from typing import Callable

# mode -> module whose `run(config, workdir, writer)` implements it.
MODES = {
    "features": "mer_jax.train.features",
    "sft": "mer_jax.train.sft",
    "eval": "mer_jax.train.benchmark",
    "grpo": "mer_jax.rl.grpo",
    "oppo": "mer_jax.rl.oppo",
    "export_hf": "mer_jax.hf.export",
    "predict": "mer_jax.predict",
}


def get_mode(name: str) -> Callable:
  """The `run` function of mode `name`."""
  if name not in MODES:
    raise KeyError(f"unknown mode {name!r}; known: {', '.join(MODES)}")
  return importlib.import_module(MODES[name]).run
