"""Hugging Face checkpoints in and out: safetensors I/O, key maps, loader, export."""

from mer_jax.hf.export import export_hf
from mer_jax.hf.export import hf_tensors
from mer_jax.hf.loader import abstract_params
from mer_jax.hf.loader import config_from_hf_dir
from mer_jax.hf.loader import load_hf_params
from mer_jax.hf.loader import param_shardings

__all__ = [
    "abstract_params",
    "config_from_hf_dir",
    "export_hf",
    "hf_tensors",
    "load_hf_params",
    "param_shardings",
]
