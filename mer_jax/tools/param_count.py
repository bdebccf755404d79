"""Parameter counts of the configured AffectGPT model, from shapes only (no weights).

    python -m mer_jax.tools.param_count --config=configs/grpo.py:paper [--json]

Counts use `jax.eval_shape` on the real architecture configs. `llm`, `vision`, `audio`
equal the HF `Qwen2ForCausalLM`, `CLIPVisionModelWithProjection`, `HubertModel` counts;
`lora` is the adapters, `fusion` the pre-fusion, `trainable = lora + fusion`,
`total = llm + vision + audio + fusion + lora`. With `--json` the last line is the dict.
"""

from __future__ import annotations

import json
from typing import Any

from absl import app
from absl import flags
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from mer_jax.hf.loader import abstract_params
from mer_jax.models import clip_vision
from mer_jax.models import fusion as fusion_lib
from mer_jax.models import hubert
from mer_jax.models import lora as lora_lib
from mer_jax.models import qwen2
from mer_jax.train import policy

_FLAGS: dict = {}


def _define_flags() -> None:
  """Command-line flags, defined only when this module runs as a program, so tests can
  import it next to other tools that define --config."""
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", None, "Run config, e.g. configs/grpo.py:paper."
  )
  _FLAGS["json"] = flags.DEFINE_bool(
      "json", False, "Print the counts as one JSON line (last line of output)."
  )
  _FLAGS["vocab"] = flags.DEFINE_integer(
      "vocab_size",
      0,
      "Tokenizer size for configs whose LLM arch leaves "
      "vocab_size 0 (demo/test presets); 0 = use the arch's.",
  )


def _count(tree: Any, keep=lambda path: True) -> int:
  flat = traverse_util.flatten_dict(nn.unbox(tree))
  return sum(int(leaf.size) for path, leaf in flat.items() if keep(path))


def count_params(config, vocab_size: int = 0) -> dict[str, int]:
  """`{"llm", "vision", "audio", "fusion", "lora", "trainable", "total"}` for a run config."""
  model_cfg, vision_cfg, audio_cfg = policy.build_model_configs(config, vocab_size, placeholders=())
  if not model_cfg.llm.vocab_size:
    raise ValueError(
        "config.model.llm has vocab_size 0 (taken from the tokenizer): pass --vocab_size"
    )
  llm = abstract_params(qwen2.Qwen2ForCausalLM(model_cfg.llm))
  vision = abstract_params(clip_vision.CLIPVisionModelWithProjection(vision_cfg))
  audio = abstract_params(hubert.HubertModel(audio_cfg))
  frames, clips = config.data.num_frames, config.data.num_audio_clips
  fusion = jax.eval_shape(
      fusion_lib.PreFusion(model_cfg.fusion).init,
      jax.random.key(0),
      jnp.zeros((1, frames, vision_cfg.projection_dim)),
      jnp.zeros((1, clips, audio_cfg.hidden_size)),
  )
  counts = {
      "llm": _count(llm, lambda p: not lora_lib.is_lora_path(p)),
      "vision": _count(vision),
      "audio": _count(audio),
      "fusion": _count(fusion),
      "lora": _count(llm, lora_lib.is_lora_path),
  }
  counts["trainable"] = counts["lora"] + counts["fusion"]
  counts["total"] = (
      counts["llm"] + counts["vision"] + counts["audio"] + counts["fusion"] + counts["lora"]
  )
  return counts


def main(argv):
  del argv
  counts = count_params(_FLAGS["config"].value, _FLAGS["vocab"].value)
  for name, n in counts.items():
    print(f"{name:>10}: {n:>15,d}")
  if _FLAGS["json"].value:
    print(json.dumps(counts))


if __name__ == "__main__":
  _define_flags()
  flags.mark_flag_as_required("config")
  app.run(main)
