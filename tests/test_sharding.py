"""Tests for mesh creation, sharding tactics and plans."""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from big_vision_lite import optim
from big_vision_lite import sharding
import ml_collections


def test_make_mesh_fills_minus_one():
  mesh = sharding.make_mesh([("data", -1), ("model", 2)])
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  with pytest.raises(ValueError, match="more than one -1"):
    sharding.make_mesh([("data", -1), ("model", -1)])
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh([("data", 3), ("model", 2)])


def test_fsdp_shards_largest_divisible_dim():
  mesh = sharding.make_mesh([("data", 8)])
  shapes = {"a": jnp.zeros((3, 16, 8)), "b": jnp.zeros((5,)), "c": {"k": jnp.zeros((7, 24))}}
  plan = sharding.make_plan(shapes, [("c/.*", "replicate"), (".*", "fsdp(axis='data')")], mesh)
  assert plan == {"a": P(None, "data", None), "b": P(), "c": {"k": P()}}


def test_unknown_tactic_and_bad_args():
  mesh = sharding.make_mesh([("data", 8)])
  with pytest.raises(KeyError, match="Did you mean 'fsdp'"):
    sharding.make_plan({"a": jnp.zeros(8)}, [(".*", "fsd(axis='data')")], mesh)
  with pytest.raises(TypeError, match="Bad arguments for sharding tactic"):
    sharding.make_plan({"a": jnp.zeros(8)}, [(".*", "fsdp(axes='data')")], mesh)
  with pytest.raises(ValueError, match="mesh has no axis 'model'"):
    sharding.make_plan({"a": jnp.zeros(8)}, [(".*", "fsdp(axis='model')")], mesh)


def test_opt_state_follows_params_and_bytes_split():
  mesh = sharding.make_mesh([("data", 8)])
  params = {"w": jnp.ones((64, 32)), "frozen": jnp.ones((16, 8))}
  cfg = ml_collections.ConfigDict(dict(lr=0.1, schedule=[("frozen", None), (".*", {})]))
  tx, _ = optim.make(cfg, params, 10)
  plan = sharding.make_plan(params, [(".*", "fsdp(axis='data')")], mesh)
  opt_plan = sharding.opt_state_plan(tx, jax.eval_shape(tx.init, params), plan)
  sh = sharding.to_shardings(opt_plan, mesh)
  opt = jax.jit(tx.init, out_shardings=sh)(params)
  leaves = [x for x in jax.tree.leaves(opt) if x.size > 1]
  assert len(leaves) == 2  # Adam mu and nu of "w" only: frozen params have no state.
  for x in leaves:
    assert x.addressable_shards[0].data.size == x.size // 8


def test_global_batch_uses_act_batch_rule():
  mesh = sharding.make_mesh([("data", 4), ("model", 2)])
  b = sharding.global_batch({"x": np.arange(8 * 3).reshape(8, 3)}, mesh,
                            [(sharding.ACT_BATCH, "data")])
  assert b["x"].sharding.spec == P("data")
  np.testing.assert_array_equal(np.asarray(b["x"]), np.arange(24).reshape(8, 3))
