"""Reinforcement learning for AffectGPT-R1 / OPPO: rewards, advantages, losses.

- `advantages`: group-relative advantages on the [B, G] grid (registry by name).
- `losses`: GRPO clipped-ratio loss and the omni-perception KL as (sum, denominator).
- `rewards`: host-side reward registry (format, accuracy, alignment, dual, perception).
- `bradley_terry`: MM fit of Bradley-Terry strengths (perception reward).

Formulas and choices: docs/rl.md.
"""

from __future__ import annotations

from typing import Any, Mapping


class Registry(dict):
  """Name -> entry for things configs choose by name (rewards, estimators, ...).

  `registry[name]` of an unknown name raises a KeyError that lists the registered
  names (plus a hint for names other code registers later); `register` refuses to
  overwrite an entry.
  """

  def __init__(self, kind: str, hints: Mapping[str, str] | None = None):
    super().__init__()
    self.kind = kind
    self.hints = dict(hints or {})

  def unknown(self, name: str) -> KeyError:
    """The error for a name that is not registered."""
    hint = f" ({self.hints[name]})" if name in self.hints else ""
    return KeyError(
        f"{self.kind} {name!r} is not registered{hint}; registered: {', '.join(sorted(self))}"
    )

  def __missing__(self, name: str):
    raise self.unknown(name)

  def register(self, name: str, entry: Any = None) -> Any:
    """`register(name, entry)`, or `@register(name)` as a decorator; returns the entry."""

    def add(value: Any) -> Any:
      if name in self:
        raise ValueError(f"{self.kind} {name!r} is already registered")
      self[name] = value
      return value

    return add if entry is None else add(entry)
