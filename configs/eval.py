"""Evaluation of a checkpoint, or of every checkpoint in a directory (mode `eval`).

    python -m mer_jax.main --config=configs/eval.py[:demo|test|paper] \
        --config.checkpoint.init_from=W/checkpoints/300 --workdir=W_eval

One checkpoint on the held-out split: EW F/P/R and format rate in summary.json. A
directory of checkpoints (`--config.checkpoint.init_from=W/checkpoints`), the nine
MER-UniBench sets (`--config.eval.benchmark=unibench --config.eval.unibench_root=DIR`) or
the LLM extractor (`--config.eval.extractor=llm:DIR`): benchmark.json / benchmark.md, one
table of checkpoints x sets (mer_jax/train/benchmark.py). Field docs: configs/common.py.
"""

from configs import common


def get_config(arg=None):
  preset = common.parse_preset(arg)
  return common.base_config(preset, mode="eval")
