"""Evaluation of a checkpoint on the held-out split (EW F/P/R, format rate).

    python -m mer_jax.main --config=configs/eval.py[:demo|test|paper] \
        --config.checkpoint.init_from=W/checkpoints/300 --workdir=W_eval

Field docs: configs/common.py.
"""

from configs import common


def get_config(arg=None):
  preset = common.parse_preset(arg)
  return common.base_config(preset, mode="eval")
