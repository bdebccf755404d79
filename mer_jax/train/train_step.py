"""The jitted supervised train step: exact (sum, count) losses, accumulation, donation.

A loss function returns `(loss_sum, count, aux)` for one micro-batch; the step sums
sums, counts and gradients over `grad_accum` micro-batches (`lax.scan`) and divides
once at the end, so k micro-batches give exactly the gradient of one big batch and the
mean is over all target tokens of the global batch, whatever the device layout.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  trainable: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so Orbax saves it as an ordinary array


def init_train_state(trainable: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
  return TrainState(
      step=jnp.asarray(0, jnp.int32),
      trainable=trainable,
      opt_state=tx.init(trainable),
      rng=jax.random.key_data(jax.random.PRNGKey(seed)),
  )


def token_cross_entropy(
    logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Next-token cross-entropy in fp32: logits[:, t] predicts input_ids[:, t+1].

  `loss_mask[:, t] = 1` marks input_ids[:, t] as a target token (answer, `###`, eos).
  Shapes: logits [B, T, V], input_ids/loss_mask [B, T]. Returns (sum, count).
  """
  logits = logits[:, :-1].astype(jnp.float32)
  targets = input_ids[:, 1:]
  mask = loss_mask[:, 1:].astype(jnp.float32)
  logz = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  nll = logz - target_logit
  return jnp.sum(nll * mask), jnp.sum(mask)


def _split_micro(batch: dict, k: int) -> dict:
  def split(x):
    if x.shape[0] % k:
      raise ValueError(f"batch of {x.shape[0]} rows does not split into {k} micro-batches")
    return x.reshape((k, x.shape[0] // k) + x.shape[1:])

  return jax.tree_util.tree_map(split, batch)


def map_micro_batches(fn: Callable[[dict], Any], batch: dict, k: int) -> Any:
  """`fn` over `k` micro-batches of `batch`'s rows, one after the other (`lax.map`); outputs
  are concatenated back along the rows, so memory is bounded by one micro-batch."""
  if k == 1:
    return fn(batch)
  out = jax.lax.map(fn, _split_micro(batch, k))
  return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), out)


def accumulate_gradients(
    loss_fn: LossFn, trainable: Any, frozen: Any, batch: dict, rng: jax.Array, grad_accum: int
) -> tuple[jax.Array, jax.Array, Any, dict]:
  """Sums (loss_sum, count, grads of loss_sum, aux) over `grad_accum` micro-batches."""
  grad_fn = jax.value_and_grad(lambda p, b, r: _sum_and_aux(loss_fn, p, frozen, b, r), has_aux=True)

  def one(b, r):
    (loss_sum, (count, aux)), grads = grad_fn(trainable, b, r)
    return loss_sum, count, grads, aux

  if grad_accum == 1:
    return one(batch, rng)
  micro = _split_micro(batch, grad_accum)
  rngs = jax.random.split(rng, grad_accum)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, trainable)

  def body(carry, xs):
    loss_sum, count, grads = carry
    b, r = xs
    part_sum, c, g, aux = one(b, r)
    return (loss_sum + part_sum, count + c, jax.tree_util.tree_map(jnp.add, grads, g)), aux

  (loss_sum, count, grads), auxs = jax.lax.scan(
      body, (jnp.zeros(()), jnp.zeros(()), zeros), (micro, rngs)
  )
  aux = jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), auxs)
  return loss_sum, count, grads, aux


def _sum_and_aux(loss_fn, trainable, frozen, batch, rng):
  loss_sum, count, aux = loss_fn(trainable, frozen, batch, rng)
  return loss_sum, (count, aux)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule | None,
    grad_accum: int = 1,
) -> Callable[[TrainState, Any, dict], tuple[TrainState, dict]]:
  """`step(state, frozen, batch) -> (state, metrics)`; jit it with shardings (and donate state)."""

  def step(state: TrainState, frozen: Any, batch: dict) -> tuple[TrainState, dict]:
    rng, step_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
    loss_sum, count, grad_sums, aux = accumulate_gradients(
        loss_fn, state.trainable, frozen, batch, step_rng, grad_accum
    )
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree_util.tree_map(lambda g: g / denom, grad_sums)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {
        "loss": loss_sum / denom,
        "target_tokens": count,
        "grad_norm": optax.tree.norm(grads),
        **aux,
    }
    if schedule is not None:
      metrics["lr"] = schedule(state.step)
    new_state = state.replace(
        step=state.step + 1, trainable=trainable, opt_state=opt_state, rng=jax.random.key_data(rng)
    )
    return new_state, metrics

  return step
