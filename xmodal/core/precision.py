"""Dtype policy: which dtype parameters are stored in and activations computed in (the spec's
``precision`` node). The matching bf16-input, f32-accumulate products are ``xmodal.nn.precision``.

Mixed precision here means: parameters are stored in ``param_dtype`` (f32, so optimizer updates
are not lost to bf16 rounding), matrix products read bf16 operands and accumulate in f32, and
reductions that are sensitive to rounding (LayerNorm, softmax, L2 normalisation) run in f32
(Micikevicius et al., "Mixed Precision Training", 2018).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

DotGeneral = Callable[..., jax.Array]

_DTYPE_NAMES = {"float32": jnp.float32, "f32": jnp.float32,
                "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16,
                "float16": jnp.float16, "f16": jnp.float16}


def fast_compute_dtype() -> str:
    """'bfloat16' where the hardware multiplies bf16 natively, else 'float32'.

    TPUs and GPUs do; a CPU does when it has AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo).
    Elsewhere XLA emulates bf16 products and they run slower than f32.
    """
    import jax
    if jax.default_backend() != "cpu":
        return "bfloat16"
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _parse_dtype(value: Any, what: str) -> Any:
    if value == "auto":
        value = fast_compute_dtype()
    if isinstance(value, str):
        if value not in _DTYPE_NAMES:
            raise ValueError(f"{what}={value!r} is not a dtype name; use one of "
                             f"{', '.join(sorted(_DTYPE_NAMES))}")
        return _DTYPE_NAMES[value]
    try:
        dtype = jnp.dtype(value)
    except TypeError as e:
        raise ValueError(
            f"{what}={value!r} is not a dtype; use e.g. 'float32' or 'bfloat16'") from e
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{what}={value!r} must be a floating dtype such as 'float32' or 'bfloat16'")
    return dtype.type


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtype parameters are stored in and which dtype activations are computed in.

    ``Policy()`` is the bf16 mixed-precision policy; ``Policy.from_name("f32")`` computes in f32.
    """
    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.bfloat16

    _NAMES = {"bf16": ("float32", "bfloat16"), "f32": ("float32", "float32")}

    @classmethod
    def from_name(cls, name: str) -> "Policy":
        if name not in cls._NAMES:
            raise ValueError(f"unknown precision policy {name!r}; use one of "
                             f"{', '.join(cls._NAMES)} or a mapping "
                             "{'param_dtype': 'float32', 'compute_dtype': 'bfloat16'}")
        param, compute = cls._NAMES[name]
        return cls(param_dtype=_parse_dtype(param, "param_dtype"),
                   compute_dtype=_parse_dtype(compute, "compute_dtype"))

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> "Policy":
        valid = ("param_dtype", "compute_dtype")
        bad = sorted(set(spec) - set(valid))
        if bad:
            raise ValueError(f"precision policy has unknown key(s) {', '.join(bad)}; "
                             f"valid keys: {', '.join(valid)}")
        default = cls()
        return cls(param_dtype=_parse_dtype(spec.get("param_dtype", default.param_dtype),
                                            "param_dtype"),
                   compute_dtype=_parse_dtype(spec.get("compute_dtype", default.compute_dtype),
                                              "compute_dtype"))

    @classmethod
    def from_spec(cls, spec: "str | Mapping[str, Any] | Policy") -> "Policy":
        """Accepts a policy, a name ("bf16", "f32") or a mapping of the two dtypes."""
        if isinstance(spec, Policy):
            return spec
        if isinstance(spec, str):
            return cls.from_name(spec)
        if isinstance(spec, Mapping):
            return cls.from_mapping(spec)
        raise ValueError(f"precision policy must be a name, a mapping or a Policy, got {spec!r}")
