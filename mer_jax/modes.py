"""Name-keyed registry of run modes: `config.mode` -> `run(config, workdir, writer)`.

Entries are import paths so that validating a config imports nothing heavy, and so a mode
whose module is not built yet fails with a message naming what is missing instead of an
ImportError deep in a stack trace.
"""

from __future__ import annotations

import importlib
from typing import Callable

# mode -> (module, function, the issue that builds it)
_MODES = {
    "sft": ("mer_jax.train.sft", "run", "#6 cold-start SFT trainer"),
    "eval": ("mer_jax.train.evaluation", "run", "#6 evaluation loop"),
    "grpo": ("mer_jax.rl.grpo", "run", "#7 GRPO"),
    "oppo": ("mer_jax.rl.oppo", "run", "#8 OPPO"),
    "export_hf": ("mer_jax.hf.export", "run", "#9 HF export mode"),
}


class ModeNotBuiltError(RuntimeError):
    """The mode's implementation is not in this build yet."""


def get_mode(name: str) -> Callable:
    if name not in _MODES:
        raise KeyError(f"unknown mode {name!r}; known: {', '.join(_MODES)}")
    module_name, fn_name, issue = _MODES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise ModeNotBuiltError(
            f"mode {name!r} is not implemented yet in this build ({module_name} is missing; "
            f"tracked in issue {issue})") from None
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise ModeNotBuiltError(f"mode {name!r} is not implemented yet: {module_name}.{fn_name} is missing "
                                f"(tracked in issue {issue})")
    return fn
