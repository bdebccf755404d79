"""Flax linen model zoo: Qwen2 LLM, CLIP vision, HuBERT, BERT; LoRA and sharding helpers."""

from mer_jax.models.bert import BertConfig
from mer_jax.models.bert import BertModel
from mer_jax.models.bert import mean_pool_normalize
from mer_jax.models.clip_vision import CLIPVisionConfig
from mer_jax.models.clip_vision import CLIPVisionModelWithProjection
from mer_jax.models.hubert import HubertConfig
from mer_jax.models.hubert import HubertModel
from mer_jax.models.qwen2 import Qwen2Config
from mer_jax.models.qwen2 import Qwen2ForCausalLM

__all__ = [
    "BertConfig",
    "BertModel",
    "CLIPVisionConfig",
    "CLIPVisionModelWithProjection",
    "HubertConfig",
    "HubertModel",
    "Qwen2Config",
    "Qwen2ForCausalLM",
    "mean_pool_normalize",
]
