"""mer-jax: open-vocabulary multimodal emotion recognition (AffectGPT, AffectGPT-R1, OPPO) in JAX."""

__version__ = "0.1.0"
