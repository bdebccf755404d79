"""GRPO math: advantages, the clipped loss and its aggregations, Bradley-Terry, OPPO KL."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from mer_jax.rl import advantages as adv_lib
from mer_jax.rl import bradley_terry as bt
from mer_jax.rl import losses

MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


# ---------------------------------------------------------------- advantages
def test_group_advantages_match_numpy():
  rewards = np.array([[1.0, 0.0, 0.5, 2.0], [0.3, 0.3, 0.3, 0.3], [0.0, 1.0, 0.0, 0.0]], np.float32)
  got = np.asarray(adv_lib.group_advantages(rewards))
  centred = rewards - rewards.mean(axis=1, keepdims=True)
  want = centred / (rewards.std(axis=1, ddof=1, keepdims=True) + 1e-4)
  want[1] = 0.0
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      np.asarray(adv_lib.group_advantages(rewards, scale_rewards=False)),
      np.where([[0], [1], [0]], 0.0, centred),
      atol=1e-6,
  )


def test_zero_variance_group_is_exactly_zero():
  # 0.1 is not exactly representable: r - mean(r) would leave a rounding residue.
  rewards = np.full((3, 5), 0.1, np.float32) * np.array([[1.0], [3.0], [7.0]], np.float32)
  for name in ("grpo", "dr_grpo"):
    out = np.asarray(adv_lib.ADVANTAGE_ESTIMATORS[name](rewards))
    assert np.array_equal(out, np.zeros_like(out))


def test_compute_advantages_flat_and_registry():
  flat = np.array([1.0, 0.0, 0.0, 0.0, 2.0, 4.0], np.float32)
  got = np.asarray(adv_lib.compute_advantages(flat, num_generations=2, name="dr_grpo"))
  np.testing.assert_allclose(got, [0.5, -0.5, 0.0, 0.0, -1.0, 1.0])
  assert adv_lib.estimator_name(True) == "grpo" and adv_lib.estimator_name(False) == "dr_grpo"
  with pytest.raises(KeyError, match="registered: dr_grpo, grpo"):
    adv_lib.ADVANTAGE_ESTIMATORS["ppo"]  # pylint: disable=pointless-statement
  with pytest.raises(ValueError, match="already registered"):
    adv_lib.ADVANTAGE_ESTIMATORS.register("grpo", lambda r: r)
  with pytest.raises(ValueError, match="G=4"):
    adv_lib.compute_advantages(flat, num_generations=4)


# ---------------------------------------------------------------- GRPO loss
def numpy_grpo_loss(logp, old, ref, adv, mask, clip_eps, clip_eps_high, beta, mode, max_len):
  """Token-by-token re-derivation of AffectGPT-R1 eq. 2-5 with the k3 KL."""
  n, t = logp.shape
  hi = clip_eps_high if clip_eps_high > 0 else clip_eps
  per_token = np.zeros((n, t))
  for i in range(n):
    for j in range(t):
      ratio = math.exp(logp[i, j] - old[i, j])
      clipped = min(max(ratio, 1 - clip_eps), 1 + hi)
      loss = -min(ratio * adv[i], clipped * adv[i])
      if ref is not None:
        d = ref[i, j] - logp[i, j]
        loss += beta * (math.exp(d) - d - 1)
      per_token[i, j] = loss
  valid = [i for i in range(n) if mask[i].sum() > 0]
  if mode == "token_mean":
    return (per_token * mask).sum() / mask.sum()
  if mode == "seq_mean_token_mean":
    return np.mean([(per_token[i] * mask[i]).sum() / mask[i].sum() for i in valid])
  return (per_token * mask).sum() / (len(valid) * max_len)


def make_batch(seed=0, n=6, t=7):
  rng = np.random.default_rng(seed)
  logp = rng.uniform(-3.0, -0.1, (n, t)).astype(np.float32)
  # Ratios from 0.55 to 1.65: inside and outside [0.8, 1.2] and [0.8, 1.28].
  old = (logp - rng.uniform(-0.6, 0.5, (n, t))).astype(np.float32)
  ref = (logp + rng.normal(0, 0.3, (n, t))).astype(np.float32)
  adv = np.array([1.3, -0.7, 0.0, -2.0, 0.4, 1.0], np.float32)[:n]
  lengths = np.array([7, 3, 5, 1, 0, 6])[:n]  # row 4 is padding only
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
  return logp, old, ref, adv, mask


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "use_kl,clip_eps_high", [(False, 0.0), (True, 0.0), (True, 0.28), (False, 0.28)]
)
def test_grpo_loss_matches_numpy(mode, use_kl, clip_eps_high):
  logp, old, ref, adv, mask = make_batch()
  ratio = np.exp(logp - old)[mask > 0]
  assert (ratio < 0.8).any() and (ratio > 1.28).any() and ((ratio > 0.8) & (ratio < 1.2)).any()
  beta = 0.05 if use_kl else 0.0
  out = losses.grpo_loss(
      jnp.asarray(logp),
      jnp.asarray(adv),
      jnp.asarray(mask),
      jnp.asarray(old),
      jnp.asarray(ref) if use_kl else None,
      clip_eps=0.2,
      clip_eps_high=clip_eps_high,
      beta=beta,
      max_len=16,
      loss_agg=mode,
  )
  want = numpy_grpo_loss(
      logp.astype(np.float64),
      old.astype(np.float64),
      ref if use_kl else None,
      adv,
      mask,
      0.2,
      clip_eps_high,
      beta,
      mode,
      16,
  )
  assert float(out.loss_sum / out.denominator) == pytest.approx(want, rel=1e-5, abs=1e-6)
  want_denom = {"token_mean": mask.sum(), "seq_mean_token_mean": 5, "seq_mean_token_sum_norm": 5}[
      mode
  ]
  assert float(out.denominator) == want_denom


def test_grpo_loss_metrics():
  logp, old, ref, adv, mask = make_batch()
  entropy = np.abs(logp) * 0.5
  out = losses.grpo_loss(
      logp, adv, mask, old, ref, entropy, clip_eps=0.2, clip_eps_high=0.28, beta=0.1
  )
  m = {k: float(v) for k, v in losses.mean_metrics(out.metrics).items()}
  ratio = np.exp(logp.astype(np.float64) - old)
  a = adv[:, None]
  tokens = mask.sum()
  assert float(out.metrics["tokens"]) == tokens
  assert m["clip_low"] == pytest.approx((((ratio < 0.8) & (a < 0)) * mask).sum() / tokens)
  assert m["clip_high"] == pytest.approx((((ratio > 1.28) & (a > 0)) * mask).sum() / tokens)
  assert m["clip_low"] > 0 and m["clip_high"] > 0
  assert m["ratio"] == pytest.approx((ratio * mask).sum() / tokens, rel=1e-5)
  d = ref.astype(np.float64) - logp
  assert m["kl"] == pytest.approx(((np.exp(d) - d - 1) * mask).sum() / tokens, rel=1e-5)
  assert m["entropy"] == pytest.approx((entropy * mask).sum() / tokens, rel=1e-5)


def test_default_old_logprobs_is_ratio_one_policy_gradient():
  logp, _, _, adv, mask = make_batch()
  grad = jax.grad(lambda lp: losses.grpo_loss(lp, adv, mask).loss_sum)(jnp.asarray(logp))
  np.testing.assert_allclose(np.asarray(grad), -adv[:, None] * mask, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_zero_variance_group_has_exactly_zero_gradient(mode):
  logp, old, _, _, mask = make_batch(seed=1, n=4)
  rewards = np.array([[0.7, 0.7], [1.0, 0.0]], np.float32)  # group 0 has zero variance
  adv = adv_lib.compute_advantages(rewards.reshape(-1), num_generations=2)

  def loss(lp):
    out = losses.grpo_loss(lp, adv, mask, old, loss_agg=mode)
    return out.loss_sum / out.denominator

  grad = np.asarray(jax.grad(loss)(jnp.asarray(logp)))
  assert np.array_equal(grad[:2], np.zeros_like(grad[:2]))
  assert np.abs(grad[2:] * mask[2:]).sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_microbatch_accumulation_equals_full_batch(mode):
  logp, old, ref, adv, mask = make_batch(seed=2)
  kwargs = dict(clip_eps=0.2, clip_eps_high=0.28, beta=0.04, max_len=7, loss_agg=mode)

  def loss_fn(lp, sl):
    out = losses.grpo_loss(lp[sl], adv[sl], mask[sl], old[sl], ref[sl], **kwargs)
    return out.loss_sum, out.denominator

  lp = jnp.asarray(logp)
  full = lambda x: jnp.divide(*loss_fn(x, slice(None)))
  chunks = [slice(0, 1), slice(1, 4), slice(4, 6)]  # unequal sizes; the last holds the padding row

  def accumulated(x):
    sums, denoms = zip(*(loss_fn(x, s) for s in chunks), strict=True)
    return sum(sums) / sum(denoms)

  assert float(accumulated(lp)) == pytest.approx(float(full(lp)), rel=1e-6)
  np.testing.assert_allclose(
      np.asarray(jax.grad(accumulated)(lp)), np.asarray(jax.grad(full)(lp)), rtol=1e-5, atol=1e-8
  )


def test_unknown_aggregation_names_registered():
  with pytest.raises(KeyError, match="seq_mean_token_sum_norm"):
    losses.grpo_loss(jnp.zeros((1, 2)), jnp.zeros(1), jnp.ones((1, 2)), loss_agg="seq_sum")
  assert set(MODES) <= set(losses.LOSS_AGGREGATIONS)


# ---------------------------------------------------------------- OPPO / PAPO KL
def test_omni_perception_kl():
  rng = np.random.default_rng(0)
  full = jnp.asarray(rng.normal(size=(2, 5, 11)), jnp.float32)
  weights = jnp.asarray([[1, 1, 0, 0, 1], [0, 0, 0, 1, 0]], jnp.float32)
  kl_sum, denom = losses.omni_perception_kl(full, full, weights)
  assert float(kl_sum) == pytest.approx(0.0, abs=1e-6) and float(denom) == 4.0

  masked = full + jnp.asarray(rng.normal(size=(2, 5, 11)), jnp.float32)
  kl_sum, _ = losses.omni_perception_kl(full, masked, weights)
  p = jax.nn.softmax(full, -1)
  want = np.sum(
      np.asarray(weights)
      * np.sum(p * (jax.nn.log_softmax(full, -1) - jax.nn.log_softmax(masked, -1)), -1)
  )
  assert float(kl_sum) == pytest.approx(float(want), rel=1e-5) and float(kl_sum) > 0

  # Only weighted tokens contribute: changing unweighted positions changes nothing.
  touched = masked.at[0, 2].add(5.0).at[1, 0].add(3.0)
  assert float(losses.omni_perception_kl(full, touched, weights)[0]) == pytest.approx(
      float(kl_sum), rel=1e-6
  )
  per_token = np.asarray(losses.token_kl(full, masked))
  assert (per_token > 0).all()


# ---------------------------------------------------------------- Bradley-Terry
def test_bradley_terry_recovers_ranking_from_simulated_preferences():
  rng = np.random.default_rng(0)
  true = np.array([8.0, 4.0, 2.0, 1.0, 0.5])
  k = len(true)
  wins = np.zeros((k, k))
  for i, j in itertools.combinations(range(k), 2):
    p_ij = true[i] / (true[i] + true[j])
    n_i = rng.binomial(400, p_ij)
    wins[i, j], wins[j, i] = n_i, 400 - n_i
  scores = bt.bradley_terry_scores(wins)
  assert scores.sum() == pytest.approx(1.0)
  assert list(np.argsort(-scores)) == list(range(k))
  np.testing.assert_allclose(scores, true / true.sum(), rtol=0.15)
  np.testing.assert_array_equal(bt.top_half(scores), [1, 1, 0, 0, 0])


def test_bradley_terry_matches_brute_force_likelihood_maximizer():
  wins = np.array(
      [[0, 2, 1, 0.5], [1, 0, 2, 1], [0, 1, 0, 3], [0, 0.5, 0, 0]]
  )  # player 3 wins little
  prior = 0.1
  scores = bt.bradley_terry_scores(wins, prior=prior, tol=1e-13)

  def neg_ll(theta):
    p = np.exp(theta - theta.max())
    return -bt.bradley_terry_log_likelihood(wins, p / p.sum(), prior)

  res = optimize.minimize(neg_ll, np.zeros(4), method="BFGS", options={"gtol": 1e-10})
  p = np.exp(res.x - res.x.max())
  np.testing.assert_allclose(scores, p / p.sum(), rtol=1e-5)
  assert bt.bradley_terry_log_likelihood(wins, scores, prior) >= -res.fun - 1e-9


def test_bradley_terry_zero_wins_batched_and_ties():
  wins = np.array(
      [
          [[0, 1, 1], [0, 0, 1], [0, 0, 0]],  # a strict order; player 2 never wins
          [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
      ]
  )  # all ties
  scores = bt.bradley_terry_scores(wins)
  assert np.all(np.isfinite(scores)) and np.all(scores > 0)
  np.testing.assert_allclose(scores.sum(-1), 1.0)
  assert scores[0, 0] > scores[0, 1] > scores[0, 2]
  np.testing.assert_allclose(scores[1], 1 / 3)
  np.testing.assert_array_equal(bt.top_half(scores), [[1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize(
    "scores,want",
    [
        ([0.4, 0.3, 0.2, 0.1], [1, 1, 0, 0]),
        ([0.1, 0.4, 0.4, 0.1], [0, 1, 1, 0]),
        ([0.4, 0.2, 0.2, 0.2], [1, 0, 0, 0]),  # tie across the boundary: tied ones get 0
        ([0.25, 0.25, 0.25, 0.25], [0, 0, 0, 0]),
        ([0.5, 0.3, 0.2], [1, 0, 0]),
        ([1.0], [0]),
    ],
)
def test_top_half(scores, want):
  np.testing.assert_array_equal(bt.top_half(np.array(scores)), want)
