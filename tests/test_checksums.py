"""A checkpoint's checksums: the same two numbers per array whether numpy sums them in host
memory or a program sums them on the devices, so a checkpoint written either way verifies
either way."""
import jax
import jax.numpy as jnp
import numpy as np

from xmodal.core import checkpoint as ckpt_lib


def test_host_and_device_sums_agree_for_every_word_size_and_wrap_alike():
    rng = np.random.default_rng(0)
    tree = {"f32": rng.normal(size=(300, 77)).astype(np.float32),
            "bf16": jnp.asarray(rng.normal(size=(5, 9)), jnp.bfloat16),
            "f16": rng.normal(size=7).astype(np.float16),
            "i32": np.arange(-50, 50, dtype=np.int32),
            "u8": rng.integers(0, 255, 1000).astype(np.uint8),
            "rng": jax.random.key_data(jax.random.key(3)),
            "step": jnp.int32(12),
            # 64-bit host leaves: summed as the 32-bit words jnp.asarray makes of them
            "f64": rng.normal(size=5), "i64": np.arange(6), "py": 3}
    host = ckpt_lib.checksums(tree)
    assert all(ckpt_lib._in_host_memory(x) for x in jax.tree.leaves(tree))
    device = {ckpt_lib.path_str(p): [int(v) for v in np.asarray(s)] for p, s in
              jax.tree_util.tree_leaves_with_path(jax.device_get(ckpt_lib._SUMS(tree)))}
    assert host == device
    # The weighted sum of 23,100 words of ~2**30 each wraps modulo 2**32 many times.
    w = tree["f32"].reshape(-1).view(np.uint32).astype(np.uint64)
    assert host["f32"][1] == int(np.sum(w * np.arange(1, w.size + 1, dtype=np.uint64)) % 2**32)
