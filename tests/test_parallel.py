"""Mesh construction and the regex sharding table."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from xmodal.core import parallel
from xmodal.core.registry import SpecError


def test_mesh_fills_minus_one_and_checks_sizes():
    mesh = parallel.make_mesh({"data": -1, "fsdp": 2, "model": 1})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "model": 1}
    assert parallel.batch_size_per_device(mesh) == 8
    with pytest.raises(SpecError, match="needs 16 devices, there are 8"):
        parallel.make_mesh({"data": 8, "fsdp": 2, "model": 1})
    with pytest.raises(SpecError, match="at most one axis may be -1"):
        parallel.make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(SpecError, match="not divisible by 3"):
        parallel.make_mesh({"data": -1, "model": 3})


def test_rules_first_match_and_fallback_to_replication():
    mesh = parallel.make_mesh({"data": 4, "fsdp": 2, "model": 1})
    tree = {"enc": {"kernel": jax.ShapeDtypeStruct((8, 6), np.float32),
                    "bias": jax.ShapeDtypeStruct((6,), np.float32)},
            "odd": {"kernel": jax.ShapeDtypeStruct((3, 6), np.float32)}}
    rules = [(r".*/kernel", ("fsdp",)), (r".*", ())]
    sh = parallel.tree_shardings(mesh, rules, tree)
    assert sh["enc"]["kernel"].spec == P("fsdp")
    assert sh["enc"]["bias"].spec == P()
    assert sh["odd"]["kernel"].spec == P()  # 3 rows do not split over fsdp=2


def test_unmatched_parameter_is_named():
    with pytest.raises(SpecError, match="no sharding rule matches parameter 'enc/bias'"):
        parallel.match_rules([(r".*/kernel", ())], {"enc": {"bias": np.zeros(2)}})
