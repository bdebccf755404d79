"""Decoding: the one home of generation, used by evaluation, predict, GRPO and OPPO.

- `sampler`: the model-agnostic jitted sampler (prefill + KV-cache decode in a while loop),
  sampling settings, stop sequences, padding helpers.
- `generation`: generation with the AffectGPT policy on the mesh (prompts embedded once,
  repeated G times), completion decoding to text.
"""
