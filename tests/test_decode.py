"""Decoding: greedy == repeated full forward passes, samplers, beam, best-of-n, EOS, mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_vision_lite import decode
from big_vision_lite.models import paligemma

B, T, L = 4, 6, 6          # batch, prompt length (padded), max_decode_len
PROMPT_LENS = (3, 6, 2, 4)  # ragged prompts, right-padded


@pytest.fixture(scope="module")
def setup():
  model = paligemma.Model(img_model="vit", img=dict(variant="mu/8", depth=1),
                          llm_model="gemma",
                          llm=dict(variant="gemma_tiny", vocab_size=64, depth=1))
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (B, 16, 16, 3)).astype(np.float32)
  text = np.zeros((B, T), np.int32)
  for i, n in enumerate(PROMPT_LENS):
    text[i, :n] = rng.integers(3, 64, n)
    text[i, 0] = 2  # BOS
  mask_input = (np.arange(T)[None] < np.array(PROMPT_LENS)[:, None]).astype(np.int32)
  batch = dict(image=image, text=text, mask_input=mask_input,
               mask_ar=(1 - mask_input).astype(np.int32))
  # Random params from shapes (faster than compiling init); std 0.3 gives peaked
  # next-token distributions, so argmax is never a near tie.
  shapes = jax.eval_shape(model.init, jax.random.key(1), image, text, batch["mask_ar"])
  params = jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32),
                        shapes["params"])
  return model, params, batch


def _greedy_reference(model, params, batch, steps):
  """Argmax of full forward passes over prompt + tokens so far, one step at a time."""
  fwd = jax.jit(lambda p, im, tx, ar, m: model.apply({"params": p}, im, tx, ar,
                                                     input_mask=m)[0])
  lens = np.asarray(batch["mask_input"]).sum(1)
  text = np.zeros((B, T + steps), np.int32)
  text[:, :T] = batch["text"]
  out = np.zeros((B, steps), np.int32)
  for s in range(steps):
    cur = lens + s
    mask = (np.arange(T + steps)[None] < cur[:, None]).astype(np.int32)
    ar = np.zeros_like(mask)
    for i in range(B):
      ar[i, lens[i]:] = 1
    logits = np.asarray(fwd(params, batch["image"], text, ar, mask))
    nxt = logits[np.arange(B), cur - 1].argmax(-1)
    out[:, s] = nxt
    text[np.arange(B), cur] = nxt
  return out


def _decode(setup, sampler="greedy", eos_id=-1, **kw):
  model, params, batch = setup
  kw.setdefault("max_decode_len", L)
  return jax.tree.map(np.asarray, decode.decode(model, params, batch, sampler=sampler,
                                                eos_id=eos_id, **kw))


@pytest.fixture(scope="module")
def greedy(setup):
  return _decode(setup)


def test_greedy_matches_full_forward(setup, greedy):
  want = _greedy_reference(*setup, L)
  np.testing.assert_array_equal(greedy["tokens"], want)
  np.testing.assert_array_equal(greedy["lengths"], [L] * B)
  assert greedy["tokens"].dtype == np.int32 and greedy["logprobs"].shape == (B, L)
  assert np.all(greedy["logprobs"] <= 0)


def test_eos_on_ragged_batch_and_padding_rows(setup, greedy):
  toks = greedy["tokens"]
  eos = int(toks[0, 2])  # Pretend a token the model emits is EOS.
  out = _decode(setup, eos_id=eos)
  for i in range(B):
    hits = np.flatnonzero(toks[i] == eos)
    n = hits[0] + 1 if len(hits) else L
    assert out["lengths"][i] == n
    np.testing.assert_array_equal(out["tokens"][i, :n], toks[i, :n])
    assert np.all(out["tokens"][i, n:] == 0) and np.all(out["logprobs"][i, n:] == 0)
  # A batch padding row never blocks the early stop and yields nothing.
  model, params, batch = setup
  padded = dict(batch, _mask=np.array([True, False, True, True]))
  out2 = jax.tree.map(np.asarray, decode.decode(model, params, padded, max_decode_len=L,
                                                eos_id=eos))
  assert out2["lengths"][1] == 0 and np.all(out2["tokens"][1] == 0)
  np.testing.assert_array_equal(out2["tokens"][[0, 2, 3]], out["tokens"][[0, 2, 3]])


def test_sampling_reproducible(setup):
  a = _decode(setup, "temperature(t=1.5)", rng=jax.random.key(3))
  b = _decode(setup, "temperature(t=1.5)", rng=jax.random.key(3))
  c = _decode(setup, "temperature(t=1.5)", rng=jax.random.key(4))
  np.testing.assert_array_equal(a["tokens"], b["tokens"])
  assert not np.array_equal(a["tokens"], c["tokens"])


@pytest.mark.parametrize("sampler", ["topk(k=1)", "nucleus(p=1e-6)"])
def test_topk1_and_tiny_nucleus_are_greedy(setup, greedy, sampler):
  out = _decode(setup, sampler, rng=jax.random.key(5))
  np.testing.assert_array_equal(out["tokens"], greedy["tokens"])


def test_topk_and_logit_mask_restrict_tokens(setup, greedy):
  allowed = decode.allowed_tokens_mask(64, [5, 7, 11])
  out = _decode(setup, "topk(k=2)", logit_mask=allowed, rng=jax.random.key(0))
  assert set(np.unique(out["tokens"])) <= {5, 7, 11}


def test_answers_constrain_output(setup):
  answers = [[5, 9], [5, 7, 11], [20]]
  out = _decode(setup, eos_id=1, answers=answers)
  want = {(5, 9, 1), (5, 7, 11, 1), (20, 1)}
  for i in range(B):
    n = out["lengths"][i]
    assert tuple(out["tokens"][i, :n]) in want and np.all(out["tokens"][i, n:] == 0)
  with pytest.raises(ValueError, match="not supported with beam"):
    _decode(setup, "beam(2)", eos_id=1, answers=answers)


@pytest.mark.slow
def test_beam1_is_greedy_and_beam4_scores_higher(setup, greedy):
  b1 = _decode(setup, "beam(1)")
  np.testing.assert_array_equal(b1["tokens"], greedy["tokens"])
  np.testing.assert_allclose(b1["logprobs"], greedy["logprobs"], atol=1e-5)
  b4 = _decode(setup, "beam(4)")
  np.testing.assert_allclose(b4["scores"], b4["logprobs"].sum(-1), atol=1e-4)
  assert np.all(b4["scores"] >= greedy["logprobs"].sum(-1) - 1e-5)
  # Length normalisation (alpha is data: same compiled function).
  b4n = _decode(setup, "beam(4, alpha=0.6)", eos_id=int(greedy["tokens"][0, 2]))
  np.testing.assert_allclose(
      b4n["scores"], b4n["logprobs"].sum(-1) / b4n["lengths"] ** 0.6, rtol=1e-5)


@pytest.mark.slow
def test_best_of_n_picks_max_and_score_agrees(setup):
  out = _decode(setup, "best_of_n(n=3, sampler='temperature(t=1.0)')",
                rng=jax.random.key(2))
  np.testing.assert_allclose(out["logprobs"].sum(-1), out["all_logprob_sums"].max(1),
                             atol=1e-5)
  # score() of prompt + the chosen answer equals the summed decode log-probs.
  model, params, batch = setup
  lens = np.asarray(batch["mask_input"]).sum(1)
  text = np.zeros((B, T + L), np.int32)
  mask_loss = np.zeros_like(text)
  text[:, :T] = batch["text"]
  for i in range(B):
    text[i, lens[i]:lens[i] + L] = out["tokens"][i]
    mask_loss[i, lens[i]:lens[i] + L] = 1
  mask_input = (np.arange(T + L)[None] < (lens + L)[:, None]).astype(np.int32)
  rows = dict(image=batch["image"], text=text, mask_ar=mask_loss, mask_input=mask_input,
              mask_loss=mask_loss)
  np.testing.assert_allclose(decode.score(model, params, rows), out["logprobs"].sum(-1),
                             atol=1e-4)


def test_sharded_batch_matches_single_device(setup, greedy):
  model, params, batch = setup
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(8), ("data",))
  big = jax.tree.map(lambda x: np.concatenate([x, x[::-1]]), batch)  # B = 8
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  sharded = decode.decode(model, jax.device_put(params, repl), jax.device_put(big, data),
                          max_decode_len=L, eos_id=-1)
  assert sharded["tokens"].sharding.spec[0] == "data"
  single = np.concatenate([greedy["tokens"], greedy["tokens"][::-1]])
  np.testing.assert_array_equal(np.asarray(sharded["tokens"]), single)


def test_bad_sampler_strings():
  with pytest.raises(KeyError, match="Did you mean 'nucleus'"):
    decode.get_sampler("nucleous(p=0.9)")
  with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
    decode.get_sampler("nucleus(p=1.5)")
  with pytest.raises(ValueError, match="per-token sampler"):
    decode.get_sampler("best_of_n(n=2, sampler='beam(2)')")
  assert decode.get_sampler("nucleus(0.9)").kind == "token"
  assert decode.get_sampler("beam(4, alpha=0.6)").alpha == 0.6
  with pytest.raises(ValueError, match="must be > 0"):
    decode.get_sampler("topk(k='many')")


def test_prompt_lengths_in_one_bucket_share_a_compilation(setup, greedy):
  """T = 6 and T = 7 both pad to 8: one compile, same tokens as the unpadded decode."""
  model, params, batch = setup
  longer = dict(batch)
  for k in ("text", "mask_input", "mask_ar"):
    longer[k] = np.pad(batch[k], ((0, 0), (0, 1)))
  before = decode._decode_jit._cache_size()  # pylint: disable=protected-access
  outs = [decode.decode(model, params, b, max_decode_len=L, eos_id=-1, prompt_bucket=8)
          for b in (batch, longer)]
  assert decode._decode_jit._cache_size() == before + 1  # pylint: disable=protected-access
  for out in outs:
    np.testing.assert_array_equal(np.asarray(out["tokens"]), greedy["tokens"])
  with pytest.raises(ValueError, match="prompt_bucket=0 must be an int >= 1"):
    decode.decode(model, params, batch, max_decode_len=L, eos_id=-1, prompt_bucket=0)


class _CountingModel:
  """Delegates to a paligemma Model and counts extend_cache traces and runs."""

  def __init__(self, model, calls):
    self.model, self.calls = model, calls

  def apply(self, variables, *args, method=None, **kw):
    if method == "extend_cache":
      jax.debug.callback(lambda: self.calls.append(1))
    return self.model.apply(variables, *args, method=method, **kw)


def test_no_extend_step_after_the_last_token(setup):
  """L tokens take L - 1 extend steps (none after the last), and stop early at EOS."""
  model, params, batch = setup
  calls = []
  counting = _CountingModel(model, calls)
  prep = dict(batch, _mask=np.ones((B,), bool))
  run = jax.jit(lambda p, b: decode.sample_loop(
      counting, p, *decode.prefill(counting, p, b, L)[:2], jnp.zeros((B,), bool),
      jax.random.key(0), decode.get_sampler("greedy").knobs(), max_decode_len=L,
      eos_id=-1))
  out = jax.block_until_ready(run(params, prep))
  assert len(calls) == L - 1
  assert np.asarray(out["lengths"]).tolist() == [L] * B
