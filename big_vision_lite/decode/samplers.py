"""Samplers of `decode`: the sampler-string registry, token picking, logit masks.

Sampler strings are parsed with `registry.parse_call` (the list is in the `decode`
package docstring). Per-token samplers become three numbers (t, k, p) that enter the
compiled decode loop as data, so all of them share one compilation.

Constraints on what may be generated:
  * `logit_mask` bool[V] or bool[B, V]: tokens allowed at every step (e.g. only the loc
    tokens, `allowed_tokens_mask(V, range(loc_base, loc_base + 1024))`);
  * `answers` int32[A, L]: a closed set of token sequences (each ending with EOS, padded
    with -1); at each step only tokens that continue one of the answers still matching
    the generated prefix are allowed, so the output is always one of the answers.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from big_vision_lite import registry

SAMPLERS = registry.Registry("sampler")
NEG_INF = -1e30


@dataclasses.dataclass(frozen=True)
class Sampler:
  """A parsed sampler.

  Per-token samplers ("token") are described by numbers that enter the compiled decode
  loop as data (not as constants), so greedy, temperature, top-k and nucleus all share one
  compiled function: t (temperature; 0 = argmax), k (top-k; 0 = off), p (nucleus mass;
  1 = off).

  Attributes:
    kind: "token", "beam" or "best_of_n".
    t, k, p: per-token sampler knobs (kind "token").
    n: beam size or number of samples.
    inner: the per-sample `Sampler` of best_of_n.
    alpha: beam length normalisation exponent (0 = plain sum of log-probs).
  """
  kind: str
  t: float = 0.0
  k: int = 0
  p: float = 1.0
  n: int = 1
  inner: object = None
  alpha: float = 0.0

  def knobs(self):
    """float32[3]: (t, k, p) of the per-token sampler (of the inner one for best_of_n)."""
    s = self.inner or self
    return jnp.asarray([s.t, s.k, s.p], jnp.float32)


def _check_positive(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"Sampler argument {name}={value!r} must be > 0.")


@SAMPLERS.register("greedy")
def greedy():
  return Sampler("token")


@SAMPLERS.register("temperature")
def temperature(t=1.0):
  _check_positive("t", t)
  return Sampler("token", t=float(t))


@SAMPLERS.register("topk")
def topk(k=40, t=1.0):
  _check_positive("k", k)
  _check_positive("t", t)
  return Sampler("token", t=float(t), k=int(k))


@SAMPLERS.register("nucleus")
def nucleus(p=0.9, t=1.0):
  if not 0 < p <= 1:
    raise ValueError(f"nucleus(p={p!r}): p must be in (0, 1].")
  _check_positive("t", t)
  return Sampler("token", t=float(t), p=float(p))


@SAMPLERS.register("beam")
def beam(n=4, alpha=0.0):
  _check_positive("n", n)
  return Sampler("beam", n=int(n), alpha=float(alpha))


@SAMPLERS.register("best_of_n")
def best_of_n(n=4, sampler="temperature(t=1.0)"):
  _check_positive("n", n)
  inner = get_sampler(sampler)
  if inner.kind != "token":
    raise ValueError(f"best_of_n needs a per-token sampler, got {sampler!r}; use one of "
                     "greedy, temperature, topk, nucleus.")
  return Sampler("best_of_n", n=int(n), inner=inner)


def get_sampler(spec):
  """Parses a sampler string (see module docstring) into a `Sampler`."""
  if isinstance(spec, Sampler):
    return spec
  if not isinstance(spec, str):
    raise TypeError(f"sampler={spec!r} must be a string like 'greedy' or 'nucleus(p=0.9)'.")
  return SAMPLERS.call(spec)


def pick_tokens(logits, rng, knobs):
  """Picks one token per row.

  Args:
    logits: float32[B, V] (already logit-masked).
    rng: PRNG key.
    knobs: float32[3] = (t, k, p): temperature (0 = argmax), top-k (0 = off), nucleus
      mass (1 = off); top-k and nucleus both apply to softmax(logits / t).

  Returns:
    int32[B].
  """
  t, k, p = knobs[0], knobs[1], knobs[2]
  v = logits.shape[-1]

  def restrict(lg):
    srt = jnp.sort(lg, -1)[:, ::-1]
    kk = jnp.where(k > 0, jnp.clip(k, 1, v), v).astype(jnp.int32)
    kth = jax.lax.dynamic_index_in_dim(srt, kk - 1, axis=1, keepdims=True)
    probs = jax.nn.softmax(srt, -1)
    before = jnp.cumsum(probs, -1) - probs  # mass strictly before each sorted token
    nuc = jnp.min(jnp.where(before < p, srt, jnp.inf), -1, keepdims=True)
    return jnp.where(lg >= jnp.maximum(kth, nuc), lg, NEG_INF)

  def sample(lg):
    lg = lg / jnp.maximum(t, 1e-6)
    lg = jax.lax.cond((k > 0) | (p < 1), restrict, lambda x: x, lg)
    return jax.random.categorical(rng, lg, -1).astype(jnp.int32)

  # Greedy skips the random draw (B x V noise per step) and the sort at run time.
  return jax.lax.cond(t > 0, sample, lambda lg: jnp.argmax(lg, -1).astype(jnp.int32),
                      logits)


def apply_logit_mask(logits, logit_mask):
  """Sets logits of disallowed tokens to -1e30; logit_mask bool[V] or bool[B, V] or None."""
  if logit_mask is None:
    return logits
  return jnp.where(logit_mask, logits, NEG_INF)


def allowed_tokens_mask(vocab_size, token_ids):
  """bool[V] mask allowing only `token_ids` (e.g. the 1024 loc tokens)."""
  mask = np.zeros((vocab_size,), bool)
  mask[np.asarray(list(token_ids), np.int64)] = True
  return mask


def answers_array(answers, eos_id, length):
  """Token-id lists -> int32[A, length] padded with -1 (EOS appended where missing).

  Raises:
    ValueError: for an empty list or an empty answer.
  """
  if not answers or any(len(a) == 0 for a in answers):
    raise ValueError(f"answers={answers!r} must be a non-empty list of non-empty token-id "
                     "lists, e.g. [tok.encode('yes'), tok.encode('no')].")
  out = np.full((len(answers), length), -1, np.int32)
  for i, a in enumerate(answers):
    a = [int(t) for t in a]
    if a[-1] != eos_id:
      a.append(eos_id)
    a = a[:length]
    out[i, :len(a)] = a
  return out


def answers_mask(alive, answers, step, vocab_size):
  """bool[B, V]: tokens continuing an answer still alive at `step`.

  Args:
    alive: bool[B, A], answers whose first `step` tokens match the generated ones.
    answers: int32[A, L] from `answers_array`.
    step: int32 scalar (traced), < L.
    vocab_size: V.
  """
  col = jnp.take(answers, step, axis=1)                        # [A]
  ok = (alive & (col >= 0)[None]).astype(jnp.int32)            # [B, A]
  b = alive.shape[0]
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], ok.shape)
  cols = jnp.broadcast_to(jnp.clip(col, 0)[None], ok.shape)
  return jnp.zeros((b, vocab_size), jnp.int32).at[rows, cols].max(ok) > 0


def answers_update(alive, answers, step, tokens):
  """alive bool[B, A] after emitting tokens int32[B] at `step`."""
  col = jnp.take(answers, step, axis=1)
  return alive & (col[None] == tokens[:, None])
