"""Cold-start supervised fine-tuning (AffectGPT / AffectGPT-R1 phase 1).

    python -m mer_jax.main --config=configs/sft.py[:demo|test|paper[,affectgpt]] --workdir=W

Trains LoRA + fusion/projections on the coarse split, then evaluates on the held-out
split. Targets:
- default: the AffectGPT-R1 cold start, `<think>{description}</think><answer>{labels}</answer>`;
- variant `affectgpt` (`paper,affectgpt`): the original AffectGPT recipe, `hybrid`: each
  sample asks the description or the labels question (uniformly, per sample and epoch) and
  is supervised with that answer, as the released training code does.
Field docs: configs/common.py.
"""

from configs import common

VARIANTS = ("affectgpt",)


def get_config(arg=None):
  preset = common.parse_preset(arg, VARIANTS)
  c = common.base_config(preset, mode="sft")
  if common.parse_variant(arg, VARIANTS) == "affectgpt":
    c.data.question = "hybrid"
    c.data.target = "hybrid"
  return c
