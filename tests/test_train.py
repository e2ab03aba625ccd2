"""End-to-end tests of `train(config, workdir)` on the tiny config (real data + model)."""
import json
import os
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_vision_lite import checkpoint
from big_vision_lite import durations
from big_vision_lite import eval_params
from big_vision_lite import models
from big_vision_lite import optim
from big_vision_lite import sharding
from big_vision_lite import steps
from big_vision_lite import train
from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOLDEN_PLAN = {
    'img/Transformer/encoder_norm/bias': "P('data',)",
    'img/Transformer/encoder_norm/scale': "P('data',)",
    'img/Transformer/encoderblock/LayerNorm_0/bias': "P(None, 'data')",
    'img/Transformer/encoderblock/LayerNorm_0/scale': "P(None, 'data')",
    'img/Transformer/encoderblock/LayerNorm_1/bias': "P(None, 'data')",
    'img/Transformer/encoderblock/LayerNorm_1/scale': "P(None, 'data')",
    'img/Transformer/encoderblock/MlpBlock_0/Dense_0/bias': "P(None, 'data')",
    'img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel': "P(None, None, 'data')",
    'img/Transformer/encoderblock/MlpBlock_0/Dense_1/bias': "P(None, 'data')",
    'img/Transformer/encoderblock/MlpBlock_0/Dense_1/kernel': "P(None, 'data', None)",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/bias': "P(None, None, 'data')",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/kernel': "P(None, 'data', None, None)",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/out/bias': "P(None, 'data')",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/out/kernel': "P(None, None, None, 'data')",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/bias': "P(None, None, 'data')",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel': "P(None, 'data', None, None)",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/value/bias': "P(None, None, 'data')",
    'img/Transformer/encoderblock/MultiHeadDotProductAttention_0/value/kernel': "P(None, 'data', None, None)",
    'img/embedding/bias': "P('data',)",
    'img/embedding/kernel': "P(None, None, None, 'data')",
    'img/head/bias': "P('data',)",
    'img/head/kernel': "P(None, 'data')",
    'img/pos_embedding': "P(None, None, 'data')",
    'llm/embedder/input_embedding': "P(None, 'data')",
    'llm/final_norm/scale': "P('data',)",
    'llm/layers/attn/attn_vec_einsum/w': "P(None, None, None, 'data')",
    'llm/layers/attn/kv_einsum/w': "P(None, None, None, 'data', None)",
    'llm/layers/attn/q_einsum/w': "P(None, None, 'data', None)",
    'llm/layers/mlp/gating_einsum': "P(None, None, None, 'data')",
    'llm/layers/mlp/linear': "P(None, 'data', None)",
    'llm/layers/pre_attention_norm/scale': "P(None, 'data')",
    'llm/layers/pre_ffw_norm/scale': "P(None, 'data')",
}


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory):
  """The train() calls here compile the same programs: share them via a disk cache."""
  from jax._src import compilation_cache  # pylint: disable=import-outside-toplevel
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jit")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  compilation_cache.reset_cache()
  yield
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data") / "shapes")


def _config(data_dir, arg="", **overrides):
  c = tiny.get_config(f"data_dir={data_dir}" + (f",{arg}" if arg else ""))
  c.update(overrides)
  return c


def _lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def _tb_scalars(workdir):
  """{(tag, step): value} of the TensorBoard scalars written under workdir/tb."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tb"),
                                           size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  out = {}
  for tag in acc.Tags()["tensors"]:
    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars", tag
    out.update({(tag, e.step): float(tf.make_ndarray(e.tensor_proto))
                for e in acc.Tensors(tag)})
  return out


def _param_shapes(c):
  model = models.get_module("paligemma").Model(**c.model)
  z = jnp.zeros((1, 23), jnp.int32)
  return model, jax.eval_shape(
      lambda r: model.init(r, jnp.zeros((1, 28, 28, 3)), z, z)["params"], jax.random.key(0))


def test_golden_sharding_plan(data_dir):
  c = _config(data_dir)
  _, shapes = _param_shapes(c)
  mesh = train.make_mesh(c)
  plan = sharding.plan_to_strings(sharding.make_plan(shapes, c.sharding_strategy, mesh))
  assert plan == GOLDEN_PLAN


def test_train_two_steps(data_dir, tmp_path):
  c = _config(data_dir)
  c.evals = {"val": dict(
      type="perplexity", pred="logits", log_percent=1.0, batch_size=8,
      data=dict(c.input.caption.data, split="validation"), pp_fn=c.input.caption.pp)}
  out = train.train(c, str(tmp_path))
  assert out["step"] == 2 and not out["stopped"]
  assert np.isfinite(out["evals"]["val/perplexity"])
  assert all(np.isfinite(v) for v in out["losses"].values())
  lines = _lines(str(tmp_path))
  assert lines[-1]["val/num"] == 8
  lines = [l for l in lines if "loss" in l]
  assert [l["step"] for l in lines] == [1, 2]
  for key in ("loss", "lr", "grad_norm", "param_norm", "update_norm",
              "examples_seen/caption", "examples_seen/vqa", "examples_per_sec", "eta_sec"):
    assert key in lines[-1], key
  assert lines[-1]["examples_seen/caption"] + lines[-1]["examples_seen/vqa"] == 16
  assert os.path.exists(tmp_path / "config.json")
  # TensorBoard holds exactly the logged values, under the same keys and steps.
  want = {(k, l["step"]): v for l in _lines(str(tmp_path)) for k, v in l.items()
          if k != "step"}
  got = _tb_scalars(str(tmp_path))
  assert sorted(got) == sorted(want)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=str(key))
  assert os.listdir(tmp_path / "checkpoints") == ["2"]


def _batch(n=8):
  return {"image": np.zeros((n, 28, 28, 3), np.float32), "text": np.zeros((n, 24), np.int32),
          "mask_ar": np.zeros((n, 24), np.int32), "mask_loss": np.zeros((n, 24), np.int32)}


def _sharded_init(c, model, mesh, rng):
  """The trainer's sharded init (no `model_init`): params laid out by the plan."""
  init = train.init_fn(model, _batch())
  shapes = jax.eval_shape(init, rng)
  plan = sharding.to_shardings(sharding.make_plan(shapes, c.sharding_strategy, mesh), mesh)
  return train.model_params(c, None, train.with_shardings(shapes, plan), init, rng)


def test_fsdp_per_device_bytes(data_dir):
  c = _config(data_dir)
  model, _ = _param_shapes(c)
  leaves = jax.tree.leaves(_sharded_init(c, model, train.make_mesh(c), jax.random.key(0)))
  total = sum(x.nbytes for x in leaves)
  dev0 = sum(s.data.nbytes for x in leaves for s in x.addressable_shards
             if s.device == jax.devices()[0])
  assert dev0 < total / 8 * 1.1, (dev0, total)


@pytest.mark.slow
def test_train_resume_is_bit_identical_and_nan_stops(data_dir, tmp_path):
  c = _config(data_dir, "total_steps=4", ckpt_steps=2)
  full = train.train(c, str(tmp_path / "full"))

  part = str(tmp_path / "part")
  first = train.train(c, part, stop=lambda step: step == 1)
  assert first["stopped"] and first["step"] == 1
  rest = train.train(c, part)
  assert rest["step"] == 4 and sorted(rest["losses"]) == [2, 3, 4]
  for s in (2, 3, 4):
    assert rest["losses"][s] == full["losses"][s]
  jax.tree.map(np.testing.assert_array_equal, rest["params"], full["params"])

  # The newest checkpoint made unreadable: the run falls back to step 2, redoes 3 and 4
  # and writes step 4 again (a resume that fell back past a step must not keep it).
  keep2 = _config(data_dir, "total_steps=4", ckpt_steps=2, keep_ckpts=2)
  redo = str(tmp_path / "redo")
  train.train(keep2, redo)
  data_files = os.path.join(redo, "checkpoints", "4", "params", "d")
  for name in os.listdir(data_files):
    with open(os.path.join(data_files, name), "r+b") as f:
      f.truncate(7)
  again = train.train(keep2, redo)
  assert again["step"] == 4 and sorted(again["losses"]) == [3, 4]
  params, step = eval_params.restore_params(keep2, redo)
  assert step == 4
  jax.tree.map(np.testing.assert_array_equal, params, full["params"])

  # A finite but absurd lr (config_check refuses NaN): the step-5 update overflows the
  # params to inf, which the log-step check must catch.
  bad = _config(data_dir, "total_steps=6", ckpt_steps=2, lr=1e38)
  with pytest.raises(FloatingPointError, match=r"step 5.*\(4, 5\].*step 4"):
    train.train(bad, part)
  assert sorted(os.listdir(os.path.join(part, "checkpoints"))) == ["4"]


@pytest.mark.slow
def test_lora_and_export(data_dir, tmp_path):
  from tools import export_lora  # pylint: disable=import-outside-toplevel
  c = _config(data_dir, "total_steps=2", lora=dict(
      rank=2, alpha=4.0, targets="llm/layers/(attn|mlp)/.*", dropout=0.1))
  model, shapes = _param_shapes(c)
  init = jax.jit(lambda r: model.init(r, jnp.zeros((1, 28, 28, 3)), jnp.zeros((1, 23), jnp.int32),
                                      jnp.zeros((1, 23), jnp.int32))["params"])(jax.random.key(3))
  checkpoint.save_params(jax.device_get(init), str(tmp_path / "init.npz"))
  c.model_init = str(tmp_path / "init.npz")
  out = train.train(c, str(tmp_path / "w"))
  # Base weights (the loaded ones) are unchanged outside the adapted einsums.
  np.testing.assert_array_equal(out["params"]["img"]["head"]["kernel"],
                                init["img"]["head"]["kernel"])
  assert not np.array_equal(out["params"]["llm"]["layers"]["mlp"]["linear"],
                            init["llm"]["layers"]["mlp"]["linear"])
  path, step = export_lora.export(c, str(tmp_path / "w"), str(tmp_path / "merged.npz"))
  assert step == 2
  merged = checkpoint.load_params(path)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b),
               out["params"], merged)
  assert jax.tree.map(lambda x: x.shape, merged) == jax.tree.map(lambda x: x.shape, shapes)


def test_interrupted_save_leaves_latest_good_checkpoint(tmp_path):
  from big_vision_lite import resume  # pylint: disable=import-outside-toplevel
  state = {"w": jnp.arange(6.0).reshape(2, 3), "n": {"c": jnp.int32(3)}}
  ckpt = resume.Checkpointer(str(tmp_path), keep=2)
  state = {"params": state, "opt": [jnp.ones(3)]}
  ckpt.save(1, state, data_state={"pos": np.arange(3)}, rng=jax.random.key(1))
  ckpt.close()
  # A crash while writing step 2 leaves only orbax's temporary folder behind.
  os.makedirs(tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1234" / "state")
  ckpt = resume.Checkpointer(str(tmp_path), keep=2)
  assert ckpt.latest_step() == 1
  data, rng = ckpt.restore_meta(1)
  np.testing.assert_array_equal(data["pos"], np.arange(3))
  assert jax.random.key_data(rng).tolist() == jax.random.key_data(jax.random.key(1)).tolist()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])), state)
  back = ckpt.restore_state(1, abstract)
  jax.tree.map(np.testing.assert_array_equal, back, state)
  ckpt.close()


def test_metrics_after_resume_step_are_dropped(tmp_path):
  from big_vision_lite import metrics_log  # pylint: disable=import-outside-toplevel
  w = metrics_log.MetricsWriter(str(tmp_path), total_steps=5, batch_size=2,
                                write_note=lambda _: None)
  for step in (1, 2, 3):
    w.write(step, {"loss": float(step)})
  w.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "lo')  # Torn by a crash.
  w = metrics_log.MetricsWriter(str(tmp_path), total_steps=5, batch_size=2,
                                write_note=lambda _: None, resume_step=2)
  w.write(3, {"loss": 3.5})
  w.close()
  assert [(l["step"], l["loss"]) for l in _lines(str(tmp_path))] == [(1, 1.0), (2, 2.0),
                                                                      (3, 3.5)]
  # Hosts other than 0 write nothing (no metrics.jsonl, no TensorBoard folder).
  other = tmp_path / "other_host"
  other.mkdir()
  w = metrics_log.MetricsWriter(str(other), total_steps=5, batch_size=2, enabled=False,
                                write_note=lambda _: None)
  assert w.write(1, {"loss": 1.0})["loss"] == 1.0
  w.close()
  assert not os.listdir(other)


def test_console_line_shows_each_schedule_lr(tmp_path):
  from big_vision_lite import metrics_log  # pylint: disable=import-outside-toplevel
  notes = []
  w = metrics_log.MetricsWriter(str(tmp_path), total_steps=5, batch_size=2,
                                write_note=notes.append)
  w.write(1, {"loss": 1.0, "lr": 0.5})
  w.write(2, {"loss": 1.0, "lr/sched_0": 0.25, "lr/sched_1": 0.125})  # A list schedule.
  w.close()
  assert " lr 0.5 |g|" in notes[0] and " lr 0.25 0.125 |g|" in notes[1], notes


def test_sigterm_sets_the_stop_event():
  event, restore = train._sigterm_event()  # pylint: disable=protected-access
  try:
    os.kill(os.getpid(), signal.SIGTERM)
    assert event.wait(5)
  finally:
    restore()


def test_duration_errors():
  c = tiny.get_config()
  c.ckpt_steps, c.ckpt_percent = 1, 0.5
  with pytest.raises(ValueError, match=r"set exactly one of \['ckpt_steps'"):
    durations.duration(c, "ckpt", total_steps=10, batch_size=8, n_train=None)
  c.total_epochs = 1
  with pytest.raises(ValueError, match="set exactly one"):
    durations.total_steps(c, 8, 100)
  with pytest.raises(ValueError, match="Did you mean 'paligemma'"):
    models.get_module("paligema")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_host_reference(c, n_steps):
  """Single-process losses on the global batches that 2 hosts would assemble."""
  from big_vision_lite import input_pipeline  # pylint: disable=import-outside-toplevel
  hosts = [input_pipeline.training(c.input, seed=c.seed, process_index=i, process_count=2)
           for i in range(2)]
  mesh, rng = train.make_mesh(c), jax.random.key(c.seed)
  model, _ = _param_shapes(c)
  params = _sharded_init(c, model, mesh, rng)
  tx, _ = optim.make(c, params, n_steps)
  mask = optim.trainable_mask(c, params)
  update = jax.jit(steps.make_update_fn(
      steps.make_loss_fn(model, rules=c.sharding_rules, frozen_mask=mask), tx,
      trainable_mask=mask))
  state, losses = {"params": params, "opt": tx.init(params)}, {}
  for step in range(n_steps):
    parts = [next(h) for h in hosts]
    batch = {k: np.concatenate([p[k] for p in parts]) for k in train.TRAIN_KEYS}
    with jax.set_mesh(mesh):
      state, m = update(state, None, sharding.global_batch(batch, mesh, c.sharding_rules),
                        jax.random.fold_in(rng, step))
    losses[step + 1] = float(m["loss"])
  return losses


@pytest.mark.slow
def test_two_process_run_matches_single_process(data_dir, tmp_path):
  c = _config(data_dir, "total_steps=2")
  train.prepare(c)  # Data and tokenizer exist before the hosts start.
  port, env = _free_port(), dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
                                 XLA_FLAGS="--xla_force_host_platform_device_count=4")
  cmd = [sys.executable, "-m", "big_vision_lite.train",
         f"--config={REPO}/configs/tiny.py:data_dir={data_dir},total_steps=2",
         f"--workdir={tmp_path / 'multi'}", "--distributed",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
  procs = [subprocess.Popen(cmd + [f"--process_id={i}"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  outs = [p.communicate(timeout=900)[0].decode() for p in procs]
  assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
  multi = {l["step"]: l["loss"] for l in _lines(str(tmp_path / "multi"))}
  ref = _two_host_reference(c, 2)
  assert sorted(multi) == [1, 2]
  for step, loss in multi.items():
    np.testing.assert_allclose(loss, ref[step], rtol=1e-5)


def test_gemma_init_bf16_stream_scan_f32_params():
  model = models.get_module("gemma").Model(variant="gemma_tiny", scan=True,
                                           embed_dtype="bfloat16")
  params = model.init(jax.random.key(0), jnp.zeros((1, 5), jnp.int32))["params"]
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  logits = model.apply({"params": params}, jnp.zeros((1, 5), jnp.int32))[0]
  assert np.isfinite(np.asarray(logits, np.float32)).all()


def test_bf16_compute_trains_f32_master_params(data_dir, tmp_path):
  c = _config(data_dir, compute_dtype="bfloat16")
  out = train.train(c, str(tmp_path))
  assert out["step"] == 2 and all(np.isfinite(v) for v in out["losses"].values())
  assert {x.dtype for x in jax.tree.leaves(out["params"])} == {jnp.dtype("float32")}
  ref = train.train(_config(data_dir), str(tmp_path / "f32"))
  # Same data and init: bf16 compute changes the loss only by rounding.
  np.testing.assert_allclose(out["losses"][1], ref["losses"][1], rtol=2e-2)
  assert out["losses"][1] != ref["losses"][1]


def test_bad_evaluator_fails_before_the_first_step(data_dir, tmp_path):
  c = _config(data_dir)
  val = dict(type="perplexity", pred="logits", log_percent=1.0, batch_size=8,
             data=dict(c.input.caption.data, split="validation"))
  c.evals = {"val": dict(val, pp_fn=c.input.caption.pp.replace("decode|", "decode|resiz(2)|"))}
  with pytest.raises(KeyError, match=r"evals.val: .*resiz"):
    train.train(c, str(tmp_path / "a"))
  assert not os.path.exists(tmp_path / "a" / "checkpoints" / "1")
  c.evals = {"val": dict(val, pp_fn=c.input.caption.pp,
                         data=dict(name="jsonl", fname=str(tmp_path / "none.jsonl")))}
  with pytest.raises(FileNotFoundError, match=r"evals.val: .*none.jsonl"):
    train.train(c, str(tmp_path / "b"))


def test_cli_prints_one_line_for_a_config_error(data_dir, tmp_path):
  cmd = [sys.executable, "-m", "big_vision_lite.train",
         f"--config={REPO}/configs/tiny.py:data_dir={data_dir}",
         "--config.input.batch_size=12", f"--workdir={tmp_path / 'w'}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert p.returncode == 1
  assert "Traceback" not in p.stderr + p.stdout, p.stderr[-2000:]
  lines = [l for l in p.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: config.input.batch_size=12")


def test_eval_tool_without_checkpoint_writes_nothing(tmp_path):
  from tools import eval as eval_tool  # pylint: disable=import-outside-toplevel
  c = _config(str(tmp_path / "data"))
  for workdir in (tmp_path / "missing", tmp_path / "empty"):
    if workdir.name == "empty":
      workdir.mkdir()
    with pytest.raises(FileNotFoundError, match=r"No checkpoint in .*checkpoints.*--params"):
      eval_tool.evaluate(c, str(workdir))
  assert sorted(os.listdir(tmp_path)) == ["empty"] and not os.listdir(tmp_path / "empty")
