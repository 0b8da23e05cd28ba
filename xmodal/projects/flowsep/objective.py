"""FlowSep (Yuan et al. 2024, "FlowSep: Language-Queried Sound Separation with Rectified Flow
Matching"): rectified flow from noise to the target's latent in a frozen mel VAE.

    x1 = s * VAE-mean(mel(target)),   c = s * VAE-mean(mel(mixture)),   q = query tokens
    x_t = (1 - (1 - sigma_min) t) x0 + t x1           (CondOT path, sigma_min = 1e-4)
    L = E || v_theta(x_t, t, c, q) - (x1 - (1 - sigma_min) x0) ||^2

(``xmodal.losses.flow.flow_matching_loss``). The mixture latent c enters as extra input
channels of the velocity network (``dit`` / ``unet``); the query through cross-attention to a
text encoder trained jointly, or (``query_from``) a frozen pretrained text encoder, as the paper's
FLAN-T5: here the text tower of a trained CLAP stage, whose query embedding the network turns
into one conditioning token. For classifier-free guidance the query is replaced by the empty
query ``""`` with probability ``cfg_drop`` (the mixture is always given). ``s`` (``latent_scale``)
makes the latent unit-variance: 1 / the latent std the VAE stage measured on its training split
(its ``stage_outputs.json``).

At inference (``separate_latent``) 10 Euler steps from x0 ~ N(0, I) give x1, decoded by the VAE
to a mel spectrogram (``decode_mel``); ``separator.Separator`` turns it into a waveform. The
objective is a flow teacher (``xmodal.distill.teacher.FlowTeacher``): a ``dmd`` stage distils it
into a one-step separator (``specs/flowsep.py``'s ``distill`` stage).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xmodal import sampling
from xmodal.audio.mel import MelConfig
from xmodal.audio.remix import check_remix, remix
from xmodal.data.tokenizer import ByteTokenizer
from xmodal.distill.teacher import ode_sample, one_step
from xmodal.projects.flowsep.separator import render
from xmodal.projects.flowsep.vae_model import MelVAE
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.flow import TIME_SAMPLERS, flow_matching_loss
from xmodal.losses.flow_paths import CondOTPath
from xmodal.core.registry import SpecError
from xmodal.core.stages import load_stage

PREDICTIONS = ("velocity", "x1")
X1_MIN_SIGMA = 0.05   # bound on 1 / sigma(t) when an x1 prediction becomes a velocity


def load_vae(vae_from: str, vae: dict | None, mel: dict | None):
    """(MelVAE module, its params or None, MelConfig, latent std) from a VAE stage workdir
    (``stages.load_stage``: its spec gives the model and mel settings, its newest checkpoint
    the parameters, its outputs the latent std measured on its training split) or, with
    ``vae_from=""``, an untrained VAE of the given ``vae`` kwargs (for tests)."""
    if not vae_from:
        return MelVAE(**(vae or {})), None, MelConfig(**(mel or {})), 1.0
    stage = load_stage(vae_from).expect(objective="mel_vae", what="vae_from")
    mel_kw = stage.spec["objective"].get("mel") or {}
    if "latent_std" not in stage.outputs:
        raise SpecError(f"vae stage {vae_from!r} has no latent_std output (stage_outputs.json): "
                        "finish its training, or derive it from the trained VAE with "
                        "--mode=eval --stages=<the vae stage>")
    return stage.model, stage.params["model"], MelConfig(**mel_kw), stage.outputs["latent_std"]


@dataclasses.dataclass(frozen=True, eq=False)
class FlowSepObjective:
    model: Any              # velocity network: (x_t, t, cond latent, text) -> v
    vae: Any                # the frozen VAE's module; its parameters are params["vae"]
    vae_params: Any         # host parameters for load_frozen (None: untrained, for tests)
    mel: MelConfig
    latent_scale: float
    cfg_drop: float
    path: CondOTPath
    time_sampler: Any
    max_text_len: int
    prediction: str = "velocity"
    query_encoder: Any = None   # frozen two-tower text encoder (``query_from``) or None;
    query_params: Any = None    # its parameters are params["query_encoder"]
    remix: float = 0.0          # dynamic-mixing probability (``xmodal.audio.remix``)
    remix_gain_db: float = 0.0
    groups: tuple = ("model",)

    # ------------------------------------------------------------------ frozen networks
    # ``params`` below is the mapping the trainer passes: the trained "model" group and the
    # frozen "vae" (and "query_encoder") from ``load_frozen``, placed in the sharded state.
    def load_frozen(self) -> dict:
        vae = self.vae_params
        if vae is None:  # untrained VAE for tests: fixed seed
            mel = jnp.zeros((1, 16, self.mel.n_mels))
            vae = self.vae.init({"params": jax.random.key(0)}, mel, jax.random.key(0))["params"]
        frozen = {"vae": vae}
        if self.query_encoder is not None:
            frozen["query_encoder"] = self.query_params
        return jax.tree.map(np.asarray, frozen)

    def encode(self, params, wave):
        """Scaled VAE mean of the normalised log-mel of ``wave`` [B, T] (no gradient)."""
        mean, _ = self.vae.apply({"params": params["vae"]}, self.mel.mel(wave), method="encode")
        return jax.lax.stop_gradient(mean * self.latent_scale)

    def decode_mel(self, params, z):
        return self.vae.apply({"params": params["vae"]}, z / self.latent_scale, method="decode")

    def null_query(self, params):
        empty = jnp.asarray(ByteTokenizer(self.max_text_len).encode(""))[None]
        return self.encode_query(params, empty)[0]

    def encode_query(self, params, tokens):
        """Query tokens [B, L] as the network takes them: the tokens themselves, or with a
        frozen ``query_encoder`` its text embedding [B, D] (no gradient)."""
        if self.query_encoder is None:
            return tokens
        z = self.query_encoder.apply({"params": params["query_encoder"]}, tokens, "text",
                                     method="encode")
        return jax.lax.stop_gradient(z.astype(jnp.float32))

    def network_velocity(self, params, x_t, t, mix, query):
        """The network's output as a velocity: itself (``prediction="velocity"``, the paper)
        or, for ``prediction="x1"``, converted from its prediction of the clean latent."""
        out = self.model.apply({"params": params}, x_t, t, mix, query)
        if self.prediction == "velocity":
            return out
        return self.path.x1_to_velocity(x_t, out, t, min_sigma=X1_MIN_SIGMA)

    # ------------------------------------------------------------------ FlowTeacher
    # What score distillation reads (``xmodal.distill.teacher.FlowTeacher``): the condition is
    # the mixture latent and the encoded query; guidance drops only the query, as in training.
    def flow_data(self, params, batch):
        return self.encode(params, batch["target"])

    def flow_condition(self, params, batch):
        return {"mixture": self.encode(params, batch["mixture"]),
                "query": self.encode_query(params, batch["query"])}

    def null_condition(self, params, cond):
        q = cond["query"]
        return {"mixture": cond["mixture"],
                "query": jnp.broadcast_to(self.null_query(params), q.shape).astype(q.dtype)}

    def velocity(self, net_params, x_t, t, cond):
        return self.network_velocity(net_params, x_t, t, cond["mixture"], cond["query"])

    def with_model(self, model) -> "FlowSepObjective":
        return dataclasses.replace(self, model=model)

    # ------------------------------------------------------------------ training
    def init(self, rng, batch, frozen):
        z = self.encode(frozen, batch["mixture"][:1])
        t = jnp.zeros((1,), jnp.float32)
        query = self.encode_query(frozen, batch["query"][:1])
        return {"model": self.model.init({"params": rng}, z, t, z, query)["params"]}

    def loss(self, params, batch, rng, group="model"):
        rng, k_mix = jax.random.split(rng)
        x1 = self.encode(params, batch["target"])
        mix = self.encode(params, remix(k_mix, batch["target"], batch["mixture"], self.remix,
                                        self.remix_gain_db))

        def apply_fn(p, x_t, t, query):
            return self.network_velocity(p, x_t, t, mix, query)

        loss, aux = flow_matching_loss(
            apply_fn, params["model"], x1, self.encode_query(params, batch["query"]), rng,
            path=self.path, time_sampler=self.time_sampler, cfg_drop=self.cfg_drop,
            null_cond=self.null_query(params))
        return loss, dict(aux, latent_std=jnp.std(x1))

    # ------------------------------------------------------------------ Sampler
    def sample(self, params, noise, batch, steps: int = 10):
        """The target latent for the batch's mixtures and queries: ``steps`` Euler steps from
        ``noise`` (``xmodal.sampling.Sampler``; ``separate_latent`` has the other settings)."""
        return ode_sample(self, params["model"], noise, self.flow_condition(params, batch),
                          steps=steps)

    def render_samples(self, params, z, batch) -> dict:
        """Latents → what ``--mode=sample`` writes: waveforms by the VAE-ratio renderer
        (``separator.render``) and their log-mel spectrograms."""
        mel = self.decode_mel(params, jnp.asarray(z))
        wave = render(self, params, mel, jnp.asarray(batch["mixture"]), which=("vae_ratio",))
        return {"audio": np.asarray(wave["vae_ratio"]), "spectrogram": np.asarray(mel),
                "sample_rate": self.mel.sample_rate}

    # ------------------------------------------------------------------ inference
    def separate_latent(self, params, mixture, query, rng, *, steps: int = 10,
                        solver: str = "euler", cfg_scale: float = 1.0, noise_scale: float = 1.0):
        """Estimated target latent for mixtures [B, T] and query tokens [B, L]:
        ``steps`` fixed steps of ``solver`` (or ``solver="adaptive"``) from noise; with
        ``cfg_scale != 1`` the guided velocity v_null + w (v_query - v_null). ``noise_scale``
        (sampling temperature, 1 = the paper) scales the starting noise x0 ~ N(0, noise_scale²):
        below 1 the sample moves toward the conditional mode, as TTS flows sample (Matcha-TTS:
        0.667); 0 is the deterministic path from x0 = 0. ``solver="one_step"``: the network's
        clean-latent prediction at the noise end, G(x0) = x1(x0, t=0), which is how a one-step
        student distilled from this flow (``xmodal.distill``) generates (one call; ``steps``
        and ``cfg_scale`` do not apply). Returns (z, nfe)."""
        mix, query = self.encode(params, mixture), self.encode_query(params, query)
        x0 = noise_scale * jax.random.normal(rng, mix.shape, jnp.float32)
        if solver == "one_step":
            cond = {"mixture": mix, "query": query}
            return one_step(self, params["model"], x0, cond), 1
        # Guidance drops only the query; the mixture is the condition of both halves.
        cond = {"mixture": mix, "query": query}
        null = ({"mixture": mix, "query": self.null_query(params)} if cfg_scale != 1.0
                else cond)

        def velocity(x, t, c):
            return self.network_velocity(params["model"], x, t, c["mixture"], c["query"])

        def f(x, t):
            tb = jnp.full((x.shape[0],), t, jnp.float32)
            return sampling.guided(velocity, x, tb, cond, null, cfg_scale)
        if solver == "adaptive":
            return sampling.solve_adaptive(f, x0)
        return sampling.solve(f, x0, method=solver, steps=steps)


@OBJECTIVES.register("flowsep")
def flowsep(vae_from: str = "", vae: dict | None = None, mel: dict | None = None,
            cfg_drop: float = 0.1, sigma_min: float = 1e-4, time_sampler: str = "uniform",
            latent_scale: float = 0.0, max_text_len: int = 48, prediction: str = "velocity",
            query_from: str = "", remix: float = 0.0, remix_gain_db: float = 0.0):
    """``vae_from``: the VAE stage's workdir ("stage:vae" in a spec); ``vae``/``mel``: only for
    ``vae_from=""`` (an untrained VAE, for tests). ``latent_scale`` 0 = 1 / the measured std.
    ``prediction``: what the network outputs, ``velocity`` or ``x1`` (the clean latent; the
    loss stays the velocity MSE, see ``FlowSepObjective.velocity``). ``query_from``: a trained
    audio-text workdir (``specs/clap.py``; "stage:clap" in a spec) whose frozen text tower
    embeds the query; "" = a text encoder inside the network, trained with it. ``remix``,
    ``remix_gain_db``: dynamic mixing of the training mixtures (``xmodal.audio.remix``)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"flowsep prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if not 0.0 <= cfg_drop <= 1.0:
        raise ValueError(f"flowsep cfg_drop must be in [0, 1], got {cfg_drop}")
    check_remix(remix, remix_gain_db)  # at spec time, not at the first traced step
    sampler = TIME_SAMPLERS.get(time_sampler)()

    def bind(model, mesh):
        vae_model, params, cfg, std = load_vae(vae_from, vae, mel)
        scale = latent_scale or 1.0 / max(std, 1e-6)
        from xmodal.projects.clap.score import load_clap  # evaluate imports this module

        encoder = load_clap(query_from) if query_from else None
        if encoder is not None and encoder.tokenizer.max_len != max_text_len:
            raise SpecError(f"flowsep max_text_len={max_text_len} but the query encoder "
                            f"{query_from} reads {encoder.tokenizer.max_len} tokens")
        return FlowSepObjective(model, vae_model, params, cfg, float(scale), cfg_drop,
                                CondOTPath(sigma_min=sigma_min), sampler, max_text_len, prediction,
                                encoder and encoder.model, encoder and encoder.params,
                                float(remix), float(remix_gain_db))
    return bind
