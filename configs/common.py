"""Building blocks shared by the recipes in `configs/`.

Every recipe (`sft.py`, `grpo.py`, `oppo.py`, `eval.py`) assembles one ConfigDict from
these sections. Each field is documented where it is defined, once. Presets:

- `demo` (default): tiny random-init encoders + tiny Qwen2 on generated `synthmer`
  data; runs end to end on a 2-core CPU.
- `test`: the smallest shapes and step counts, for the test suite (seconds).
- `paper`: the papers' recipe (Qwen2.5-7B-Instruct, CLIP ViT-L/14, HuBERT-Large);
  checkpoint and data paths are left empty for the user to fill in.
"""

from __future__ import annotations

import ml_collections

from mer_jax.models.sharding import DEFAULT_LOGICAL_AXIS_RULES  # one table, shared

PRESETS = ("demo", "test", "paper")

# Packaged HF config.json files of the paper models (architecture only, no weights).
PAPER_LLM_CONFIG = "mer_jax/models/configs/qwen2.5-7b-instruct.json"
PAPER_VISION_CONFIG = "mer_jax/models/configs/clip-vit-large-patch14-vision.json"
PAPER_AUDIO_CONFIG = "mer_jax/models/configs/hubert-large.json"


def parse_preset(arg: str | None, variants: tuple[str, ...] = ()) -> str:
  """Returns the preset named by the `--config=FILE:ARG` argument (default `demo`).

  ARG may add a recipe variant after a comma (`paper,affectgpt`) when the recipe offers
  `variants`; `parse_variant` returns it.
  """
  preset, _ = _split_arg(arg, variants)
  return preset


def parse_variant(arg: str | None, variants: tuple[str, ...]) -> str:
  """The variant after the comma of `--config=FILE:PRESET,VARIANT` ('' when none)."""
  return _split_arg(arg, variants)[1]


def _split_arg(arg: str | None, variants: tuple[str, ...]) -> tuple[str, str]:
  preset, _, variant = (arg or "demo").strip().partition(",")
  preset, variant = preset.strip(), variant.strip()
  if preset not in PRESETS:
    raise ValueError(f"unknown config preset {preset!r}; choose one of {', '.join(PRESETS)}")
  if variant and variant not in variants:
    known = ", ".join(variants) if variants else "none"
    raise ValueError(f"unknown recipe variant {variant!r}; this recipe's variants: {known}")
  return preset, variant


def tiny_llm_arch(preset: str) -> dict:
  """HF `Qwen2Config` fields of the tiny demo/test LLM (vocab_size 0 = from tokenizer)."""
  hidden, layers = (128, 2) if preset == "demo" else (32, 2)
  return dict(
      model_type="qwen2",
      vocab_size=0,
      hidden_size=hidden,
      intermediate_size=2 * hidden,
      num_hidden_layers=layers,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=1024,
      rope_theta=10000.0,
      rms_norm_eps=1e-6,
      tie_word_embeddings=True,
  )


def tiny_vision_arch(preset: str, image_size: int) -> dict:
  """HF `CLIPVisionConfig` fields (+ projection_dim) of the tiny frozen vision tower."""
  hidden = 64 if preset == "demo" else 32
  return dict(
      model_type="clip_vision_model",
      hidden_size=hidden,
      intermediate_size=2 * hidden,
      num_hidden_layers=2,
      num_attention_heads=4,
      image_size=image_size,
      patch_size=8,
      projection_dim=hidden,
      hidden_act="quick_gelu",
      layer_norm_eps=1e-5,
  )


def tiny_audio_arch(preset: str) -> dict:
  """HF `HubertConfig` fields of the tiny frozen audio encoder (Large-style layout)."""
  hidden = 64 if preset == "demo" else 32
  return dict(
      model_type="hubert",
      hidden_size=hidden,
      intermediate_size=2 * hidden,
      num_hidden_layers=4,
      num_attention_heads=4,
      # Total stride 320 like HuBERT (one frame per 20 ms), in 4 convs instead of 7.
      conv_dim=[32, 32, 32, 32],
      conv_kernel=[10, 8, 4, 4],
      conv_stride=[5, 4, 4, 4],
      conv_bias=True,
      feat_extract_norm="layer",
      do_stable_layer_norm=True,
      num_conv_pos_embeddings=16,
      num_conv_pos_embedding_groups=4,
      layer_norm_eps=1e-5,
  )


def model_config(preset: str) -> ml_collections.ConfigDict:
  """The AffectGPT policy: frozen encoders, pre-fusion, LoRA Qwen2."""
  m = ml_collections.ConfigDict()
  paper = preset == "paper"
  image_size = 224 if paper else 32
  # Each encoder/LLM: `hf_dir` = a Hugging Face checkpoint directory (architecture read
  # from its config.json, weights loaded from its safetensors), or empty to build the
  # architecture in `arch` (HF config.json field names) with random weights.
  m.llm = ml_collections.ConfigDict(
      {
          "hf_dir": "",  # e.g. /ckpt/Qwen2.5-7B-Instruct
          "arch_file": PAPER_LLM_CONFIG
          if paper
          else "",  # packaged config.json used when hf_dir is empty
          "arch": {} if paper else tiny_llm_arch(preset),
          # What of the LLM trains: `lora` (the papers: frozen base + adapters) or `full`
          # (every LLM weight; the demo's tiny LLM is random-init, so it has no pretrained
          # language ability for adapters to steer). The RL phases' KL reference is the
          # SFT policy either way (docs/rl.md).
          "trainable": "lora" if paper else "full",
      }
  )
  m.vision = ml_collections.ConfigDict(
      {
          "hf_dir": "",  # e.g. /ckpt/clip-vit-large-patch14
          "arch_file": PAPER_VISION_CONFIG if paper else "",
          "arch": {} if paper else tiny_vision_arch(preset, image_size),
      }
  )
  m.audio = ml_collections.ConfigDict(
      {
          "hf_dir": "",  # e.g. /ckpt/chinese-hubert-large
          "arch_file": PAPER_AUDIO_CONFIG if paper else "",
          "arch": {} if paper else tiny_audio_arch(preset),
          # AffectGPT averages the last `num_last_layers` hidden states of HuBERT.
          "num_last_layers": 4,
      }
  )
  m.fusion = ml_collections.ConfigDict(
      {
          # attention: released per-modality Linear(d,1) temporal scores (no softmax) + the
          # 2-way "multi" token; qformer: learned queries + BERT-style cross-attention;
          # mean: time mean; none: every frame/clip feature becomes its own token.
          # (The multi token's width is max(vision, audio feature width), as released.)
          "type": "attention",
          "qformer_layers": 2,
          "qformer_hidden": 768 if paper else 64,
          "qformer_heads": 12 if paper else 4,
          "num_queries": {"video": 32, "audio": 8, "multi": 16},  # qformer query tokens
          # Initialisation of the fusion/projection Linear layers and the Q-Former position
          # embeddings: `torch` = the released code's nn.Linear defaults (kaiming-uniform
          # kernel, uniform bias, both +-1/sqrt(fan_in)) and nn.Embedding N(0, 1);
          # `normal` = N(0, 0.02) kernels, zero biases (the demo's measured setting).
          "init": "torch" if paper else "normal",
      }
  )
  m.lora = ml_collections.ConfigDict(
      {
          "rank": 16 if paper else 8,
          "alpha": 32.0 if paper else 16.0,
          "dropout": 0.05 if paper else 0.0,
          "targets": ("q", "k", "v", "o", "gate", "up", "down"),
      }
  )
  # Compute dtype of activations (`float32` | `bfloat16`); trainable params are kept in
  # `param_dtype` (fp32 master weights), frozen weights in `frozen_dtype`.
  m.dtype = "bfloat16" if paper else "float32"
  m.param_dtype = "float32"
  m.frozen_dtype = "bfloat16" if paper else "float32"
  m.scan_layers = True  # decoder layers under nn.scan (one compiled layer body)
  m.remat_policy = "full" if paper else "none"  # none | full | dots
  return m


def data_config(preset: str) -> ml_collections.ConfigDict:
  """Where samples come from and how they become token batches (docs/input_pipeline.md)."""
  d = ml_collections.ConfigDict()
  paper = preset == "paper"
  d.source = "released" if paper else "synthmer"  # synthmer | released
  # Released layout (design.md section 6); all paths may be absolute or relative to root.
  d.root = ""  # dataset root holding video/, audio/, openface_face/
  d.labels_csv = ""  # name,openset (stringified list) of the training (cold-start) split
  d.reasons_csv = ""  # name,reason descriptions (optional; think text of the cold start)
  d.subtitles_csv = ""  # name,...,english subtitles
  # The RL split (GRPO/OPPO prompts and reward labels; MER2025-OV in the paper recipe).
  # Each empty field means the training split's: rl_root -> root, rl_reasons_csv ->
  # reasons_csv, rl_subtitles_csv -> subtitles_csv, and rl_labels_csv -> labels_csv (the
  # RL phase then reads the cold-start labels; a run warns).
  d.rl_root = ""
  d.rl_labels_csv = ""
  d.rl_reasons_csv = ""
  d.rl_subtitles_csv = ""
  d.eval_labels_csv = ""  # name,openset of the held-out split scored by evaluation
  # The held-out split's media root, reasons and subtitles ('' = root, reasons_csv,
  # subtitles_csv), shared by the validation split.
  d.eval_root = ""
  d.eval_reasons_csv = ""
  d.eval_subtitles_csv = ""
  # name,openset of the validation split (eval.split='validation'): where settings are
  # chosen, so that the held-out numbers are not.
  d.val_labels_csv = ""
  # face: openface_face/{name}/{name}.npy crops (the papers' "audio, face and text");
  # frame: raw mp4 frames.
  d.face_or_frame = "face" if paper else "frame"
  d.num_frames = 8  # frames per clip at the released indices
  d.num_audio_clips = 8  # evenly spaced audio clips per sample
  d.audio_clip_seconds = 2.0
  d.sample_rate = 16000
  d.image_size = 224 if paper else 32  # CLIP input resolution
  d.question = "labels"  # hybrid | description | labels: which question the prompt asks
  d.target = "think_answer"  # think_answer | answer | hybrid: the supervised target text
  # synthmer: prompt ~105 tokens, think+answer target up to ~120.
  d.max_length = 1024 if paper else 256
  # A training sequence longer than max_length: `drop` the sample and count it in
  # summary.json['data'] (released: dropped and another drawn), or `cut` it at max_length.
  d.over_length = "drop"
  d.length_buckets = (
      (256, 512, 768, 1024) if paper else ((128, 192, 256) if preset == "demo" else (128, 256))
  )
  d.batch_size = 3 if paper else (16 if preset == "demo" else 4)  # global batch per step
  d.eval_batch_size = 8 if paper else (32 if preset == "demo" else 4)
  d.shuffle_seed = 0
  d.worker_count = 0  # grain worker processes (0 = in the main process)
  # HF tokenizer directory, or `synthmer` = a small tokenizer built from the synthmer
  # corpus at run time and saved in <workdir>/tokenizer.
  d.tokenizer = "" if paper else "synthmer"
  d.tokens_per_modality = {"multi": 1, "audio": 1, "video": 1}
  # Frozen-encoder features (docs/input_pipeline.md): `mode=features` writes them, every
  # other mode reads them and opens no media once they cover its splits (and builds them
  # first when they do not). A local path or gs://; the features of one encoder +
  # preprocessing setting live in <features_dir>/<fingerprint hash>/, so settings never
  # mix. '' = $MER_JAX_CACHE/features (default ~/.cache/mer_jax/features, shared by runs).
  d.features_dir = ""
  d.decode_workers = 16 if paper else 0  # decoding processes of the features pass (0 = inline)
  d.features_batch_size = 32 if paper else 8  # clips per encoder call (per process)
  d.features_shard_clips = 1000 if paper else 64  # clips per features shard (the unit of resume)
  d.synthmer = ml_collections.ConfigDict(
      {
          "seed": 0,
          "num_sft": 2000 if preset == "demo" else 24,
          "num_rl": 256 if preset == "demo" else 8,
          "num_eval": 400 if preset == "demo" else 8,  # 400: EW F1 standard error ~0.02
          # Validation clips (clean, disjoint from eval): where demo settings are chosen.
          "num_val": 200 if preset == "demo" else 4,
          "frame_size": 32,
          "audio_seconds": 2.0,
          "sft_label_noise": 0.3,  # fraction of SFT samples with noisy/incomplete labels
          # Fraction of SFT samples annotated from the face alone (its basic emotion and
          # visual cues only): the systematic coarseness of automatic annotations that the
          # clean RL split corrects (docs/synthmer.md).
          "sft_face_only_rate": 0.6,
          "conflict_rate": 0.3,  # fraction of clips whose modalities disagree
      }
  )
  return d


def train_config(preset: str) -> ml_collections.ConfigDict:
  """Supervised (cold-start) training: optimizer, schedule, steps."""
  t = ml_collections.ConfigDict()
  paper = preset == "paper"
  # Released budget: 60 epochs x 5000 iterations (batch 3), warmup 5000 steps.
  t.steps = 300_000 if paper else (300 if preset == "demo" else 4)
  t.init_lr = 1e-6  # linear warmup starts here (released schedule)
  t.peak_lr = 1e-5 if paper else (3e-3 if preset == "demo" else 1e-3)
  t.warmup_steps = 5000 if paper else (20 if preset == "demo" else 1)
  t.schedule = "constant"  # constant (released: min_lr = init_lr cosine == constant) | cosine
  t.min_lr = 1e-6  # floor of the cosine schedule
  t.weight_decay = 0.05  # AdamW, masked off 1-D params / biases / norms
  t.b1 = 0.9
  t.b2 = 0.999
  t.grad_clip = 0.0 if paper else 1.0  # global-norm clipping (0 = off; released: off)
  t.grad_accum = 1  # micro-batches per optimizer step
  t.log_every = 1 if preset == "test" else 10
  # The split mode `sft` trains on: `sft` (the coarse cold-start split) or `rl` (the RL
  # split's labels: with checkpoint.init_from = the cold start, the supervised control
  # of a GRPO run, docs/training.md).
  t.split = "sft"
  return t


def checkpoint_config(preset: str) -> ml_collections.ConfigDict:
  """Orbax checkpointing under <workdir>/checkpoints/<step> (async, keep-N, auto-resume)."""
  c = ml_collections.ConfigDict()
  c.every_steps = 1000 if preset == "paper" else (100 if preset == "demo" else 2)
  c.keep = 3
  # A checkpoint (one of our step directories or a released .pth) whose trained weights
  # modes sft (the start of training; optimizer fresh), eval, export_hf and predict use.
  # GRPO/OPPO start from grpo.init_checkpoint instead (an error here).
  c.init_from = ""
  return c


def mesh_config() -> ml_collections.ConfigDict:
  """Device mesh (sizes of the `data`, `fsdp`, `tensor` axes; -1 = all remaining)."""
  m = ml_collections.ConfigDict()
  m.data = 1
  m.fsdp = -1
  m.tensor = 1
  m.logical_axis_rules = DEFAULT_LOGICAL_AXIS_RULES
  return m


def eval_config(preset: str) -> ml_collections.ConfigDict:
  """Generation-based evaluation on the held-out split."""
  e = ml_collections.ConfigDict()
  paper = preset == "paper"
  e.every_steps = 0  # also evaluate every N train steps (0 = only at the end)
  e.max_new_tokens = 1200 if paper else (160 if preset == "demo" else 16)  # released: 1200
  e.temperature = 0.0  # 0 = greedy
  # greedy: the two fields above; official: the released inference settings (sampling
  # T=1, top_p 0.9, top_k from the LLM's generation_config, 1200 new tokens, prompt cut to
  # its last 800 tokens, released stop words and response post-processing; docs/official.md).
  # The paper preset decodes as the released evaluation did, so its numbers compare.
  e.decoding = "official" if paper else "greedy"
  e.num_samples = 0  # evaluate on the first N eval samples (0 = all)
  # builtin | official:DIR (the released emotion-wheel files). Numbers comparable to the
  # papers need `official:DIR`; a paper run on `builtin` warns at start.
  e.lexicon = "builtin"
  e.level = "level1"
  # The split evaluations score: `heldout` (data.eval_labels_csv / synthmer eval: the
  # reported numbers) or `validation` (data.val_labels_csv / synthmer val: for choosing
  # settings, docs/training.md).
  e.split = "heldout"
  # What mode `eval` scores: `heldout` (data.eval_labels_csv / the synthmer eval split) or
  # `unibench` (the nine MER-UniBench test sets under `unibench_root`; docs/metrics.md).
  # `checkpoint.init_from` may name a directory: every checkpoint in it is scored.
  e.benchmark = "heldout"
  e.unibench_root = ""  # holds the official folders mer2023-dataset-process, meld-process, ...
  e.unibench_datasets = ""  # comma-separated subset (MER2023,...,OVMERD); '' = all nine
  e.unibench_folders = ""  # NAME=DIR,... for sets stored elsewhere than <root>/<official folder>
  # Labels from the answers: `rules` = the answer parsed directly (<answer> tags or the
  # released "The character's emotional state is ..." sentence), sentiment from the emotion
  # wheels' valence; `llm:HF_DIR` = the official two-step extraction by a local Qwen2.5.
  e.extractor = "rules"
  return e


def decode_config() -> ml_collections.ConfigDict:
  """How rollouts and evaluation decode (mer_jax/decode/, docs/performance.md)."""
  d = ml_collections.ConfigDict()
  # replicated: once per rollout, LoRA merged, weights cast to `dtype` and resharded
  # without their data/fsdp splits (tensor splits kept), so no decode step all-gathers
  # weights; train: decode with the training layout as is (weights that do not fit a chip).
  d.layout = "replicated"
  d.dtype = ""  # LLM weight dtype when decoding ('' = model.dtype)
  # merge: LoRA folded into the kernels once per rollout (in float32, then cast to `dtype`:
  # adapter updates below the bf16 rounding of a weight are lost, as in TRL/verl merges);
  # adapter: the adapters run unmerged.
  d.lora = "merge"
  # Rows decoded at once (KV-cache batch); a row that stops frees its slot for the next
  # queued row (0 = all rows of the batch at once). Smaller than the rows of a rollout
  # when memory or compute per step is the limit (CPU: cost follows the tokens generated).
  d.slots = 0
  return d


def export_config() -> ml_collections.ConfigDict:
  """Mode `export_hf` (mer_jax/hf/export.py): the transformers checkpoint it writes."""
  x = ml_collections.ConfigDict()
  # Largest safetensors shard of the exported LLM, in MiB (several shards come with
  # model.safetensors.index.json, as transformers writes them). Shards are gathered and
  # written one tensor at a time: host memory stays at one tensor, not the model.
  x.max_shard_mb = 5000.0
  return x


def base_config(preset: str, mode: str) -> ml_collections.ConfigDict:
  """The sections every recipe has."""
  c = ml_collections.ConfigDict()
  c.mode = mode  # sft | grpo | oppo | eval | export_hf | features (any recipe; docs/scaling.md)
  c.preset = preset
  c.seed = 0
  c.model = model_config(preset)
  c.data = data_config(preset)
  c.train = train_config(preset)
  c.checkpoint = checkpoint_config(preset)
  c.mesh = mesh_config()
  c.eval = eval_config(preset)
  c.decode = decode_config()
  c.export_hf = export_config()
  return c
