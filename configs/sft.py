"""Cold-start supervised fine-tuning (AffectGPT / AffectGPT-R1 phase 1).

    python -m mer_jax.main --config=configs/sft.py[:demo|test|paper] --workdir=W

Trains LoRA + fusion/projections on the coarse split with the
`<think>{description}</think><answer>{labels}</answer>` target, then evaluates on the
held-out split. Field docs: configs/common.py.
"""

from configs import common


def get_config(arg=None):
  preset = common.parse_preset(arg)
  return common.base_config(preset, mode="sft")
