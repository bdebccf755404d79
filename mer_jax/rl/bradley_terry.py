"""Bradley-Terry strengths from pairwise wins with the MM algorithm (Hunter 2004).

Model: P(i beats j) = p_i / (p_i + p_j). Given a wins matrix w (w[i, j] = how often i
beat j; fractional counts such as 0.5 for a tie are fine), the MM update of Hunter
(2004, eq. 3) is

    p_i <- W_i / sum_{j != i} n_ij / (p_i + p_j),   W_i = sum_j w[i, j],  n_ij = w[i, j] + w[j, i],

followed by normalization to sum 1. Each step does not decrease the log-likelihood
sum_{i != j} w[i, j] log(p_i / (p_i + p_j)).

A player with no wins (or a comparison graph that is not strongly connected) has no
finite maximum-likelihood strength; `prior` adds that many pseudo-wins in both
directions to every pair, which makes the maximizer unique, positive and finite while
keeping the order of the strengths.
"""

from __future__ import annotations

import numpy as np


def bradley_terry_scores(
    wins: np.ndarray, prior: float = 1e-2, tol: float = 1e-10, max_iter: int = 10_000
) -> np.ndarray:
  """MM fit of Bradley-Terry strengths.

  Args:
    wins: [..., K, K] non-negative pairwise wins (diagonal ignored); leading axes are
      independent groups fitted together.
    prior: pseudo-wins added to each ordered pair (i, j), i != j; > 0 keeps every
      strength finite when some player never wins.
    tol: stop when the largest change of any normalized strength is below this.
    max_iter: iteration cap.
  Returns:
    [..., K] float64 strengths, each group summing to 1.
  """
  w = np.array(wins, dtype=np.float64)
  if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
    raise ValueError(f"wins must be [..., K, K], got shape {w.shape}")
  if np.any(w < 0) or not np.all(np.isfinite(w)):
    raise ValueError("wins must be finite and non-negative")
  if prior < 0:
    raise ValueError(f"prior must be >= 0, got {prior}")
  k = w.shape[-1]
  off_diag = ~np.eye(k, dtype=bool)
  w = np.where(off_diag, w + prior, 0.0)
  total_wins = w.sum(axis=-1)  # W_i
  games = w + np.swapaxes(w, -1, -2)  # n_ij, zero diagonal
  p = np.full(w.shape[:-1], 1.0 / k)
  for _ in range(max_iter):
    denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
    new = np.divide(total_wins, denom, out=np.zeros_like(p), where=denom > 0)
    new /= new.sum(axis=-1, keepdims=True)
    done = np.max(np.abs(new - p)) < tol
    p = new
    if done:
      break
  return p


def bradley_terry_log_likelihood(wins: np.ndarray, scores: np.ndarray, prior: float = 0.0) -> float:
  """sum_{i != j} (w[i, j] + prior) log(p_i / (p_i + p_j)) of one [K, K] group."""
  w = np.asarray(wins, dtype=np.float64)
  p = np.asarray(scores, dtype=np.float64)
  k = w.shape[-1]
  off_diag = ~np.eye(k, dtype=bool)
  log_prob = np.log(p[:, None]) - np.log(p[:, None] + p[None, :])
  return float(np.sum(np.where(off_diag, (w + prior) * log_prob, 0.0)))


def top_half(scores: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
  """1 for the top floor(K/2) of each group by score, else 0 (AffectGPT-R1 eq. 10).

  Ties that straddle the boundary get 0: a completion gets 1 only if its score is
  strictly above the (floor(K/2) + 1)-th largest score (beyond `rtol`), so a group
  of equal scores gets all zeros instead of an arbitrary split.

  Args:
    scores: [..., K] strengths.
  Returns:
    [..., K] float32 of 0/1.
  """
  s = np.asarray(scores, dtype=np.float64)
  k = s.shape[-1]
  half = k // 2
  if half == 0:
    return np.zeros(s.shape, np.float32)
  boundary = -np.sort(-s, axis=-1)[..., half : half + 1]  # (half + 1)-th largest
  above = s > boundary + rtol * np.abs(boundary)
  return above.astype(np.float32)
