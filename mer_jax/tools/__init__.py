"""Command-line tools: `hf_forward` (run our Flax model on a HF checkpoint), `param_count`."""
