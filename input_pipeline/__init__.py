"""Input pipeline: decoding, HF-equal preprocessing, prompts and tokenization, the
synthmer demo dataset, readers for the released layouts and grain datasets.

See docs/input_pipeline.md for the contracts (sample dict, batch format, config fields).
"""
