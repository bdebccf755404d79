"""mer-jax: open-vocabulary multimodal emotion recognition (AffectGPT, AffectGPT-R1, OPPO) in JAX."""

import os

__version__ = "0.1.0"

# transformers warns at import that PyTorch is absent; mer-jax never needs torch at run time
# (only tests do). Set here, before any entry point (main, predict, evaluate, tools) can
# import transformers.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
