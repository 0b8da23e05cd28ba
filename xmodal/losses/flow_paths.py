"""Affine probability paths for flow matching, with t = 0 noise and t = 1 data.

Every path here is an affine interpolation between a noise sample x0 ~ N(0, I) and a data
sample x1 (the convention of Lipman et al. 2023, "Flow Matching for Generative Modeling", and
of Meta's ``flow_matching`` library and ``torchcfm``):

    x_t  = alpha(t) x1 + sigma(t) x0
    dx_t = alpha'(t) x1 + sigma'(t) x0        (the conditional velocity, the regression target)

with alpha(0) ~ 0, sigma(0) ~ 1 and alpha(1) = 1, sigma(1) ~ 0. Given x_t and any one of the
velocity v, the data x1 or the noise x0, the other two follow from these two linear equations.
Writing a, s, a', s' for alpha, sigma and their derivatives at t and D = a' s - a s':

    x1 = (s v - s' x_t) / D             x0 = (a' x_t - a v) / D
    v  = (s' x_t + D x1) / s            v  = (a' x_t - D x0) / a

The first two are finite wherever D != 0 (every t for the paths below); ``x1_to_velocity``
divides by sigma and ``x0_to_velocity`` by alpha, so they blow up at the end where that
coefficient is 0 (t = 1 for CondOT with sigma_min = 0, t = 0 for the cosine path).

``t`` is a scalar or a [B] vector for a batch x of shape [B, ...]; it is broadcast over the
trailing axes. Paths are frozen dataclasses (hashable, so they can be static arguments of
``jax.jit``) and are registered in ``FLOW_PATHS`` under the names "cond_ot", "rectified" (sigma_min = 0),
"lipman_fm" (sigma_min > 0, default 1e-4), "cosine", "vp", and "icfm" (torchcfm's
independent CFM, the one path here with noise of its own: ``stochastic``).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from xmodal.core.registry import Registry

Array = jax.Array

FLOW_PATHS = Registry("flow path")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PathSample:
    """One draw from a path: the point ``x_t``, its conditional velocity ``dx_t`` and ``t``."""
    x_t: Array
    dx_t: Array
    t: Array


def expand_time(t, x: Array) -> Array:
    """``t`` (scalar or [B]) reshaped to broadcast against ``x`` of shape [B, ...]."""
    t = jnp.asarray(t)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or x.ndim == 0 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"t must be a scalar or have shape [batch] matching x's leading axis; got t "
            f"{tuple(t.shape)} and x {tuple(x.shape)}.")
    return t.reshape(t.shape + (1,) * (x.ndim - 1))


class AffinePath:
    """Base class: subclasses define ``alpha``, ``sigma`` and their time derivatives.

    ``stochastic`` paths add noise of their own to x_t and take ``sample(x0, x1, t, rng=)``."""

    stochastic = False

    def alpha(self, t: Array) -> Array:
        raise NotImplementedError

    def sigma(self, t: Array) -> Array:
        raise NotImplementedError

    def d_alpha(self, t: Array) -> Array:
        raise NotImplementedError

    def d_sigma(self, t: Array) -> Array:
        raise NotImplementedError

    def _coeffs(self, t, x: Array):
        # Coefficients in at least float32: bf16 time steps near t = 1 are too coarse.
        t = expand_time(t, x).astype(jnp.result_type(x.dtype, jnp.float32))
        return self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)

    def sample(self, x0: Array, x1: Array, t) -> PathSample:
        """x_t = alpha x1 + sigma x0 and dx_t = alpha' x1 + sigma' x0."""
        if x0.shape != x1.shape:
            raise ValueError(
                f"noise x0 and data x1 must have the same shape; got {tuple(x0.shape)} and "
                f"{tuple(x1.shape)}.")
        a, s, da, ds = self._coeffs(t, x1)
        return PathSample(x_t=a * x1 + s * x0, dx_t=da * x1 + ds * x0, t=jnp.asarray(t))

    def velocity_to_x1(self, x_t: Array, v: Array, t) -> Array:
        """Data prediction from a velocity: x1 = (sigma v - sigma' x_t) / (alpha' sigma - alpha sigma')."""
        a, s, da, ds = self._coeffs(t, x_t)
        return (s * v - ds * x_t) / (da * s - a * ds)

    def velocity_to_x0(self, x_t: Array, v: Array, t) -> Array:
        """Noise prediction from a velocity: x0 = (alpha' x_t - alpha v) / (alpha' sigma - alpha sigma')."""
        a, s, da, ds = self._coeffs(t, x_t)
        return (da * x_t - a * v) / (da * s - a * ds)

    def x1_to_velocity(self, x_t: Array, x1: Array, t, min_sigma: float = 0.0) -> Array:
        """Velocity from a data prediction: v = alpha' x1 + sigma' (x_t - alpha x1) / sigma.
        ``min_sigma`` > 0 bounds the division near the data end, where sigma -> 0 would
        amplify any error of x1 without limit (as data-prediction flows train, e.g. Li & He
        2025, "Back to Basics: Let Denoising Generative Models Denoise", with 0.05)."""
        a, s, da, ds = self._coeffs(t, x_t)
        return da * x1 + ds * (x_t - a * x1) / jnp.maximum(s, min_sigma)

    def x0_to_velocity(self, x_t: Array, x0: Array, t) -> Array:
        """Velocity from a noise prediction: v = alpha' (x_t - sigma x0) / alpha + sigma' x0."""
        a, s, da, ds = self._coeffs(t, x_t)
        return da * (x_t - s * x0) / a + ds * x0


@FLOW_PATHS.register("cond_ot")
@dataclasses.dataclass(frozen=True)
class CondOTPath(AffinePath):
    """Conditional optimal-transport (rectified-flow) path of Lipman et al. 2023, eq. 20-23:

        alpha(t) = t,   sigma(t) = 1 - (1 - sigma_min) t
        dx_t = x1 - (1 - sigma_min) x0

    so the data end is N(x1, sigma_min^2 I). sigma_min = 0 is rectified flow (Liu et al. 2023,
    "Flow Straight and Fast") and the linear path of SD3 (Esser et al. 2024).
    """
    sigma_min: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"CondOTPath sigma_min must be in [0, 1); got {self.sigma_min}.")

    def alpha(self, t):
        return t

    def sigma(self, t):
        return 1.0 - (1.0 - self.sigma_min) * t

    def d_alpha(self, t):
        return jnp.ones_like(t)

    def d_sigma(self, t):
        return jnp.full_like(t, -(1.0 - self.sigma_min))


@FLOW_PATHS.register("rectified")
@dataclasses.dataclass(frozen=True)
class RectifiedPath(CondOTPath):
    """Rectified flow (Liu et al. 2023): the CondOT path with sigma_min = 0, x_t = t x1 + (1-t) x0,
    dx_t = x1 - x0. A name of its own so a spec says what it means."""

    def __post_init__(self):
        if self.sigma_min != 0.0:
            raise ValueError(f"RectifiedPath has sigma_min = 0; got {self.sigma_min} (use "
                             "'cond_ot' or 'lipman_fm' for sigma_min > 0)")


@FLOW_PATHS.register("lipman_fm")
@dataclasses.dataclass(frozen=True)
class LipmanFMPath(CondOTPath):
    """The OT path of Lipman et al. 2023 with its sigma_min > 0 (default 1e-4, FlowSep's value):
    the data end is a Gaussian of width sigma_min around x1, not a point."""
    sigma_min: float = 1e-4

    def __post_init__(self):
        if not 0.0 < self.sigma_min < 1.0:
            raise ValueError(f"LipmanFMPath needs 0 < sigma_min < 1; got {self.sigma_min}")


@FLOW_PATHS.register("cosine")
@dataclasses.dataclass(frozen=True)
class CosinePath(AffinePath):
    """Cosine (trigonometric, variance-preserving for unit-variance data) path:

        alpha(t) = sin(pi t / 2),   sigma(t) = cos(pi t / 2)
        alpha'(t) = pi/2 cos(pi t / 2),   sigma'(t) = -pi/2 sin(pi t / 2)

    alpha^2 + sigma^2 = 1 at every t. This is the "cosine" scheduler of Meta's flow_matching
    library and the interpolant of Albergo & Vanden-Eijnden 2023 ("Building Normalizing Flows
    with Stochastic Interpolants") with the time reversed to put data at t = 1.
    """

    def alpha(self, t):
        return jnp.sin(0.5 * math.pi * t)

    def sigma(self, t):
        return jnp.cos(0.5 * math.pi * t)

    def d_alpha(self, t):
        return 0.5 * math.pi * jnp.cos(0.5 * math.pi * t)

    def d_sigma(self, t):
        return -0.5 * math.pi * jnp.sin(0.5 * math.pi * t)


@FLOW_PATHS.register("vp")
@dataclasses.dataclass(frozen=True)
class VPPath(AffinePath):
    """Variance-preserving diffusion path (Song et al. 2021, "Score-Based Generative Modeling
    through Stochastic Differential Equations") in data-at-1 time, as in Lipman et al. 2023 eq. 19:

        beta(u) = beta_min + u (beta_max - beta_min)                   (diffusion time u = 1 - t)
        T(u)    = int_0^u beta = beta_min u + (beta_max - beta_min) u^2 / 2
        alpha(t) = exp(-T(1 - t) / 2),   sigma(t) = sqrt(1 - alpha(t)^2)
        alpha'(t) = alpha(t) beta(1 - t) / 2,   sigma'(t) = -alpha(t) alpha'(t) / sigma(t)

    The noise end is not exact: alpha(0) = exp(-T(1)/2), about 6.6e-3 for the defaults
    beta_min = 0.1, beta_max = 20 (DDPM's linear schedule in continuous time). sigma'(t) grows
    like (1 - t)^(-1/2) as t -> 1 and is infinite at t = 1; the time samplers here never draw
    t = 1. 1 - alpha^2 is computed as -expm1(-T) so sigma stays accurate near t = 1.
    """
    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        if not 0.0 < self.beta_min <= self.beta_max:
            raise ValueError(
                f"VPPath needs 0 < beta_min <= beta_max; got beta_min={self.beta_min}, "
                f"beta_max={self.beta_max}.")

    def _beta(self, u):
        return self.beta_min + u * (self.beta_max - self.beta_min)

    def _integral(self, u):
        return self.beta_min * u + 0.5 * (self.beta_max - self.beta_min) * u * u

    def alpha(self, t):
        return jnp.exp(-0.5 * self._integral(1.0 - t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(-self._integral(1.0 - t)))

    def d_alpha(self, t):
        return 0.5 * self.alpha(t) * self._beta(1.0 - t)

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)


@FLOW_PATHS.register("icfm")
@dataclasses.dataclass(frozen=True)
class ICFMPath(AffinePath):
    """Independent conditional flow matching, torchcfm's ``ConditionalFlowMatcher`` (Tong et al.
    2024, "Improving and generalizing flow-based generative models with minibatch optimal
    transport", sec. 3.2.2 "I-CFM"):

        x_t = t x1 + (1 - t) x0 + sigma eps,   eps ~ N(0, I),      u_t = x1 - x0

    a Gaussian path of constant width ``sigma`` (torchcfm's default 0.1; 0 is rectified flow)
    around the straight line, whose target velocity ignores eps. The coefficients (and so the
    velocity <-> x1 <-> x0 converters) are the straight line's, alpha = t and sigma(t) = 1 - t:
    exact for the line, and for sigma > 0 off by the sigma eps the converters cannot see.
    """
    sigma: float = 0.1
    stochastic = True

    def __post_init__(self):
        if not self.sigma >= 0.0:
            raise ValueError(f"ICFMPath sigma must be >= 0; got {self.sigma}.")

    def alpha(self, t):
        return t

    # The field ``sigma`` (torchcfm's name) is the path's width, so it hides AffinePath's
    # ``sigma(t)`` method; the coefficients come from ``_coeffs`` instead.
    def _coeffs(self, t, x):
        t = expand_time(t, x).astype(jnp.result_type(x.dtype, jnp.float32))
        return t, 1.0 - t, jnp.ones_like(t), -jnp.ones_like(t)

    def sample(self, x0: Array, x1: Array, t, rng: Array | None = None) -> PathSample:
        line = super().sample(x0, x1, t)
        if self.sigma == 0.0:
            return line
        if rng is None:
            raise ValueError("ICFMPath.sample with sigma > 0 needs rng= for its path noise")
        eps = jax.random.normal(rng, x1.shape, line.x_t.dtype)
        return PathSample(x_t=line.x_t + self.sigma * eps, dx_t=line.dx_t, t=line.t)


def sample_any(path, x0: Array, x1: Array, t, rng: Array) -> PathSample:
    """``path.sample`` for any registered path: a ``stochastic`` one (I-CFM with sigma > 0) gets
    ``rng`` for its own noise, the others need none. Every caller that noises along a path it
    did not choose (a distilled teacher's, a loss's) goes through here."""
    if path.stochastic:
        return path.sample(x0, x1, t, rng=rng)
    return path.sample(x0, x1, t)
