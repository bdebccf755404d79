"""Flax linen model zoo: Qwen2 LLM, CLIP vision, HuBERT, BERT; LoRA and sharding helpers."""

from mer_jax.models.bert import BertConfig, BertModel, mean_pool_normalize
from mer_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionModelWithProjection
from mer_jax.models.hubert import HubertConfig, HubertModel
from mer_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM

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
