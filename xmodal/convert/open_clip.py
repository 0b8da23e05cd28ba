"""open_clip CLIP checkpoints (safetensors, OpenAI key layout) -> an xmodal ``two_tower`` stage.

    python -m xmodal.convert open_clip --weights open_clip_model.safetensors \\
        --config open_clip_config.json --out runs/clip_pretrained    # [--vocab bpe...txt.gz]
    # out/spec.json: {"model": the two_tower node, "data": {"transform": image_text with
    #   tokenizer="clip_bpe" and vocab=<the vocabulary, copied into out/>}}
    # out/checkpoints/0/state: params["model"], as the trainer saves them
    from xmodal.inference import Embedder
    emb = Embedder.from_workdir("runs/clip_pretrained")   # embed_items / embed_texts / zeroshot
    # Fine-tune: c.model = spec.json's model; c.init_from = "runs/clip_pretrained";
    #   c.data.transform = its transform (image_size must stay the model's, 77 text tokens).
Only safetensors are read (``safetensors.numpy.load_file``); pickles (.pt/.bin) never are.

Supported: open_clip's own ViT CLIP as ``open_clip.create_model`` builds it from a
``model_configs/*.json`` or a hub ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``):
QuickGELU or GELU, with or without ``ln_pre``. Anything else the config asks for (timm or
Hugging Face towers, ResNets, CoCa, attention pooling, layer scale, custom blocks, SigLIP's
logit bias, ``custom_text`` key layout) is a one-line error naming the field.

Mapping (open_clip tensor -> xmodal parameter; torch Linear weights are ``[out, in]`` and
xmodal kernels ``[in, out]``, hence the transposes):

    visual.conv1.weight [w, 3, p, p]     img/patch_embed/kernel [p*p*3, w]  (no bias; patch
                                         vectors flattened (row, column, channel) as vit.py's
                                         einops "b (h p) (w q) c -> b (h w) (p q c)")
    visual.class_embedding [w]           img/cls [1, 1, w]
    visual.positional_embedding [1+n, w] img/pos_embedding [1, 1+n, w]   (cls_in_pos_embedding)
    visual.ln_pre                        img/ln_pre
    visual.ln_post                       img/encoder/ln_final
    visual.proj [w, e]                   img_head/kernel  (x @ proj, already [in, out])
    token_embedding.weight               txt/token_embed/embedding
    positional_embedding [ctx, w]        txt/pos_embedding [1, ctx, w]
    ln_final                             txt/encoder/ln_final
    text_projection [w, e]               txt_head/kernel
    logit_scale (log)                    logit_scale (log; the model returns exp)
    ...resblocks.i.attn.in_proj_weight   .../block_i/attn/{query,key,value}/kernel: thirds of
        [3w, w], in_proj_bias [3w]       it, transposed to [w, heads, head_dim]; biases
                                         [heads, head_dim] (torch splits heads the same way)
    ...resblocks.i.attn.out_proj         .../attn/out/kernel [heads, head_dim, w], bias
    ...resblocks.i.ln_1, ln_2            .../ln1, ln2 (weight -> scale)
    ...resblocks.i.mlp.c_fc, c_proj      .../mlp/fc1, fc2

The towers then run as open_clip's: LayerNorm epsilon 1e-5 (torch's default), a causal text
mask with id 0 not treated as padding (it is "!" in CLIP's BPE), end-of-text pooling at the
largest token id, the class token's output after ``ln_post``; uint8 images are normalised
with the config's mean/std (OpenAI's by default). Every tensor must be used exactly once and
have the shape the config implies; the result is checked against the xmodal model's own
parameter tree (``jax.eval_shape`` of its init) before anything is written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from xmodal.convert import ConvertError
from xmodal.core import checkpoint as ckpt_lib

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
# open_clip's defaults (open_clip/constants.py) when a config has no preprocess_cfg.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# torch.nn.LayerNorm's default epsilon, which every open_clip ViT CLIP tower uses.
LN_EPSILON = 1e-5
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")

# Config fields, per section: those read here, those that must keep open_clip's default
# (xmodal's towers have no such option), and those that do not change the trained function
# (training-time options, or options of a tower type that is not in use).
USED = {
    "": {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"},
    "vision_cfg": {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size",
                   "no_ln_pre", "image_mean", "image_std"},
    "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"},
}
FIXED = {
    "": {"custom_text": False, "multimodal_cfg": None, "init_logit_bias": None},
    "vision_cfg": {"ls_init_value": None, "attentional_pool": False,
                   "pos_embed_type": "learnable", "final_ln_after_pool": False,
                   "pool_type": "tok", "act_kwargs": None, "norm_kwargs": None,
                   "block_type": None, "qk_norm": False, "scaled_cosine_attn": False,
                   "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
                   "scale_fc": False, "timm_model_name": None},
    "text_cfg": {"hf_model_name": None, "hf_tokenizer_name": None, "tokenizer_mode": None,
                 "tokenizer_kwargs": None, "ls_init_value": None, "embed_cls": False,
                 "no_causal_mask": False, "final_ln_after_pool": False, "pool_type": "argmax",
                 "proj_bias": False, "proj_type": "linear", "act_kwargs": None,
                 "norm_kwargs": None, "block_type": None, "qk_norm": False,
                 "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
                 "scale_attn": False, "scale_fc": False},
}
IGNORED = {
    "": {"cast_dtype", "init_logit_scale", "nonscalar_logit_scale", "preprocess_cfg"},
    "vision_cfg": {"patch_dropout", "output_tokens", "attn_pooler_queries", "attn_pooler_heads",
                   "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias",
                   "timm_drop", "timm_drop_path"},
    "text_cfg": {"pad_id", "eos_id", "output_tokens", "hf_model_pretrained", "hf_proj_type",
                 "hf_pooler_type"},
}
# Values that mean the same as the default above.
SAME_AS_DEFAULT = {"block_type": ("default",), "tokenizer_kwargs": ({},),
                   "act_kwargs": ({},), "norm_kwargs": ({},)}


# ---------------------------------------------------------------------------------- config

def read_config(path: str) -> tuple[dict, dict]:
    """(model config, preprocess config) of a ``model_configs/*.json`` (the model config
    itself) or a hub ``open_clip_config.json`` (``{"model_cfg", "preprocess_cfg"}``)."""
    if not os.path.isfile(path):
        raise ConvertError(f"open_clip config {path!r} does not exist")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"cannot read {path!r} as an open_clip JSON config ({e})")
    if not isinstance(cfg, dict):
        raise ConvertError(f"open_clip config {path!r} is not a JSON object")
    model_cfg = cfg.get("model_cfg", cfg)
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in model_cfg]
    if missing:
        raise ConvertError(f"open_clip config {path!r} has no {', '.join(missing)} (not an "
                           "open_clip CLIP model config)")
    return model_cfg, cfg.get("preprocess_cfg") or model_cfg.get("preprocess_cfg") or {}


def check_fields(section: str, cfg: dict, path: str) -> None:
    where = f"{section}." if section else ""
    for key, value in cfg.items():
        if key in USED[section] or key in IGNORED[section]:
            continue
        if key not in FIXED[section]:
            raise ConvertError(f"open_clip config {path!r}: unknown field {where}{key}; this "
                               "converter knows open_clip 3.3's CLIP fields")
        default = FIXED[section][key]
        if value != default and value not in SAME_AS_DEFAULT.get(key, ()):
            raise ConvertError(f"open_clip config {path!r}: {where}{key}={value!r} is not "
                               f"supported (only {default!r}: xmodal's towers have no such "
                               "option)")


def architecture(model_cfg: dict, preprocess_cfg: dict, path: str) -> dict:
    """The sizes and options of the model, from the config (open_clip's defaults for what is
    not set), after refusing what xmodal cannot build."""
    check_fields("", model_cfg, path)
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    check_fields("vision_cfg", vision, path)
    check_fields("text_cfg", text, path)

    layers = vision.get("layers", 12)
    if not isinstance(layers, int):
        raise ConvertError(f"open_clip config {path!r}: vision_cfg.layers={layers!r} is a "
                           "ResNet image tower, which this converter does not support (ViT only)")
    size = vision.get("image_size", 224)
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise ConvertError(f"open_clip config {path!r}: vision_cfg.image_size={size!r}; "
                               "only square images are supported")
        size = size[0]
    patch = vision.get("patch_size", 16)
    if size % patch:
        raise ConvertError(f"open_clip config {path!r}: vision_cfg.image_size={size} is not a "
                           f"multiple of patch_size={patch}")
    width = vision.get("width", 768)
    head_width = vision.get("head_width", 64)
    if width % head_width:
        raise ConvertError(f"open_clip config {path!r}: vision_cfg.width={width} is not a "
                           f"multiple of head_width={head_width}")
    t_width, t_heads = text.get("width", 512), text.get("heads", 8)
    if t_width % t_heads:
        raise ConvertError(f"open_clip config {path!r}: text_cfg.width={t_width} is not a "
                           f"multiple of heads={t_heads}")
    mean = preprocess_cfg.get("mean", vision.get("image_mean")) or OPENAI_MEAN
    std = preprocess_cfg.get("std", vision.get("image_std")) or OPENAI_STD
    return dict(
        embed_dim=model_cfg["embed_dim"],
        activation="quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu_exact",
        image_size=size, patch_size=patch, width=width, layers=layers,
        heads=width // head_width, mlp_dim=int(width * vision.get("mlp_ratio", 4.0)),
        ln_pre=not vision.get("no_ln_pre", False),
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
        context_length=text.get("context_length", 77), vocab_size=text.get("vocab_size", 49408),
        t_width=t_width, t_heads=t_heads, t_layers=text.get("layers", 12),
        t_mlp_dim=int(t_width * text.get("mlp_ratio", 4.0)),
    )


def model_spec(arch: dict, log_logit_scale: float) -> dict:
    """The xmodal ``model`` node that builds the same function (``MODELS`` names/kwargs)."""
    return {
        "name": "two_tower", "embed_dim": arch["embed_dim"],
        # Only an initial value: the converted checkpoint holds the trained scale.
        "temperature_init": float(log_logit_scale),
        "towers": {"image": {
            "name": "vit", "patch_size": arch["patch_size"], "width": arch["width"],
            "depth": arch["layers"], "num_heads": arch["heads"], "mlp_dim": arch["mlp_dim"],
            "pool": "cls", "patch_bias": False, "ln_pre": arch["ln_pre"],
            "cls_in_pos_embedding": True, "activation": arch["activation"],
            "ln_epsilon": LN_EPSILON, "pixel_mean": arch["mean"], "pixel_std": arch["std"]},
                   "text": {
            "name": "text_transformer", "vocab_size": arch["vocab_size"],
            "max_len": arch["context_length"], "width": arch["t_width"],
            "depth": arch["t_layers"], "num_heads": arch["t_heads"],
            "mlp_dim": arch["t_mlp_dim"], "pool": "argmax", "causal": True, "pad_mask": False,
            "activation": arch["activation"], "ln_epsilon": LN_EPSILON}},
    }


# ---------------------------------------------------------------------------------- tensors

def block_shapes(prefix: str, width: int, mlp_dim: int) -> dict[str, tuple[int, ...]]:
    return {
        prefix + "attn.in_proj_weight": (3 * width, width),
        prefix + "attn.in_proj_bias": (3 * width,),
        prefix + "attn.out_proj.weight": (width, width),
        prefix + "attn.out_proj.bias": (width,),
        prefix + "ln_1.weight": (width,), prefix + "ln_1.bias": (width,),
        prefix + "ln_2.weight": (width,), prefix + "ln_2.bias": (width,),
        prefix + "mlp.c_fc.weight": (mlp_dim, width), prefix + "mlp.c_fc.bias": (mlp_dim,),
        prefix + "mlp.c_proj.weight": (width, mlp_dim), prefix + "mlp.c_proj.bias": (width,),
    }


def expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the open_clip state dict the config describes, with its shape."""
    w, e, p = arch["width"], arch["embed_dim"], arch["patch_size"]
    tokens = (arch["image_size"] // p) ** 2 + 1
    shapes = {
        "logit_scale": (),
        "visual.conv1.weight": (w, 3, p, p), "visual.class_embedding": (w,),
        "visual.positional_embedding": (tokens, w),
        "visual.ln_post.weight": (w,), "visual.ln_post.bias": (w,), "visual.proj": (w, e),
    }
    if arch["ln_pre"]:
        shapes.update({"visual.ln_pre.weight": (w,), "visual.ln_pre.bias": (w,)})
    for i in range(arch["layers"]):
        shapes.update(block_shapes(f"visual.transformer.resblocks.{i}.", w, arch["mlp_dim"]))
    tw = arch["t_width"]
    shapes.update({
        "token_embedding.weight": (arch["vocab_size"], tw),
        "positional_embedding": (arch["context_length"], tw),
        "ln_final.weight": (tw,), "ln_final.bias": (tw,), "text_projection": (tw, e),
    })
    for i in range(arch["t_layers"]):
        shapes.update(block_shapes(f"transformer.resblocks.{i}.", tw, arch["t_mlp_dim"]))
    return shapes


def read_weights(path: str) -> dict[str, np.ndarray]:
    """The state dict of a safetensors file, as numpy (no torch, no pickle)."""
    if not os.path.isfile(path):
        raise ConvertError(f"weights file {path!r} does not exist")
    if path.lower().endswith(PICKLE_SUFFIXES):
        raise ConvertError(f"{path!r} is a pickled torch checkpoint, which xmodal never loads; "
                           "use the model's open_clip_model.safetensors")
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except Exception as e:  # SafetensorError, or a dtype numpy lacks
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConvertError(f"cannot read {path!r} as a safetensors file ({first})")


def check_tensors(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                  weights: str, config: str) -> dict[str, np.ndarray]:
    """``state`` as float32, after checking it holds exactly the tensors of ``shapes``."""
    extra = sorted(set(state) - set(shapes))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ConvertError(f"{weights!r}: tensor {extra[0]!r}{more} has no place in the model "
                           f"that {config!r} describes")
    missing = sorted(set(shapes) - set(state), key=list(shapes).index)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConvertError(f"{weights!r}: tensor {missing[0]!r}{more} is missing; the model "
                           f"that {config!r} describes needs it")
    out = {}
    for key, want in shapes.items():
        x = state[key]
        if key == "logit_scale" and x.shape == (1,):  # open_clip's nonscalar_logit_scale
            x = x.reshape(())
        if tuple(x.shape) != want:
            raise ConvertError(f"{weights!r}: tensor {key!r} has shape {tuple(x.shape)}, but "
                               f"the model that {config!r} describes needs {want}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ConvertError(f"{weights!r}: tensor {key!r} is {x.dtype}, not floating point")
        out[key] = np.asarray(x, np.float32)
    return out


def layer_norm(state: dict, prefix: str) -> dict:
    return {"scale": state[prefix + "weight"], "bias": state[prefix + "bias"]}


def linear(state: dict, prefix: str) -> dict:
    return {"kernel": state[prefix + "weight"].T, "bias": state[prefix + "bias"]}


def block(state: dict, prefix: str, heads: int) -> dict:
    """One ``ResidualAttentionBlock`` -> xmodal's ``EncoderBlock`` parameters."""
    weight, bias = state[prefix + "attn.in_proj_weight"], state[prefix + "attn.in_proj_bias"]
    width = weight.shape[1]
    head_dim = width // heads
    attn = {}
    for name, w, b in zip(("query", "key", "value"), np.split(weight, 3), np.split(bias, 3)):
        attn[name] = {"kernel": w.T.reshape(width, heads, head_dim),
                      "bias": b.reshape(heads, head_dim)}
    attn["out"] = {"kernel": state[prefix + "attn.out_proj.weight"].T.reshape(
                       heads, head_dim, width),
                   "bias": state[prefix + "attn.out_proj.bias"]}
    return {"attn": attn, "ln1": layer_norm(state, prefix + "ln_1."),
            "ln2": layer_norm(state, prefix + "ln_2."),
            "mlp": {"fc1": linear(state, prefix + "mlp.c_fc."),
                    "fc2": linear(state, prefix + "mlp.c_proj.")}}


def to_xmodal(state: dict[str, np.ndarray], arch: dict) -> dict:
    """The checked open_clip state dict -> the two_tower parameter tree (numpy float32)."""
    conv = state["visual.conv1.weight"]  # [out, in, row, column]
    patch_kernel = conv.transpose(2, 3, 1, 0).reshape(-1, conv.shape[0])  # (row, col, chan)
    img_encoder = {f"block_{i}": block(state, f"visual.transformer.resblocks.{i}.",
                                       arch["heads"]) for i in range(arch["layers"])}
    img_encoder["ln_final"] = layer_norm(state, "visual.ln_post.")
    img = {"patch_embed": {"kernel": patch_kernel},
           "cls": state["visual.class_embedding"][None, None],
           "pos_embedding": state["visual.positional_embedding"][None],
           "encoder": img_encoder}
    if arch["ln_pre"]:
        img["ln_pre"] = layer_norm(state, "visual.ln_pre.")
    txt_encoder = {f"block_{i}": block(state, f"transformer.resblocks.{i}.", arch["t_heads"])
                   for i in range(arch["t_layers"])}
    txt_encoder["ln_final"] = layer_norm(state, "ln_final.")
    txt = {"token_embed": {"embedding": state["token_embedding.weight"]},
           "pos_embedding": state["positional_embedding"][None],
           "encoder": txt_encoder}
    params = {"img": img, "txt": txt,
              "img_head": {"kernel": state["visual.proj"]},
              "txt_head": {"kernel": state["text_projection"]},
              "logit_scale": state["logit_scale"]}
    # Own C-ordered copies (transposes are views); np.array keeps 0-d arrays 0-d.
    return jax.tree.map(lambda x: np.array(x, np.float32, order="C"), params)


def check_against_model(params: dict, spec: dict, arch: dict) -> None:
    """The converted tree must be exactly the xmodal model's own parameter tree (a converter
    bug otherwise, caught before anything is written)."""
    from xmodal.core import stages
    model = stages.build_model(spec)
    image = jnp.zeros((1, arch["image_size"], arch["image_size"], 3), jnp.float32)
    text = jnp.zeros((1, arch["context_length"]), jnp.int32)
    want = jax.eval_shape(model.init, jax.random.key(0), image, text)["params"]
    got_leaves = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    want_leaves = dict(jax.tree_util.tree_flatten_with_path(want)[0])
    for path in sorted(set(got_leaves) | set(want_leaves), key=str):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if path not in want_leaves or path not in got_leaves:
            side = "the xmodal model has no" if path not in want_leaves else "nothing fills"
            raise ConvertError(f"converter bug: {side} parameter {name}")
        if tuple(got_leaves[path].shape) != tuple(want_leaves[path].shape):
            raise ConvertError(f"converter bug: parameter {name} is "
                               f"{tuple(got_leaves[path].shape)}, the xmodal model wants "
                               f"{tuple(want_leaves[path].shape)}")


# ---------------------------------------------------------------------------------- writing

def find_vocab(vocab: str, weights: str) -> str:
    path = vocab or os.path.join(os.path.dirname(os.path.abspath(weights)), VOCAB_NAME)
    if not os.path.isfile(path):
        raise ConvertError(f"CLIP BPE vocabulary {path!r} does not exist; pass --vocab (open_clip "
                           f"ships {VOCAB_NAME} in its package)")
    return path


def write_checkpoint(out: str, params: dict, meta: dict) -> str:
    """``out/checkpoints/0/{state,meta}`` as the trainer's CheckpointManager lays them out,
    with only the parameters in ``state`` (what ``init_from`` and ``load_stage`` read)."""
    mngr = ckpt_lib.manager(out, keep=1, async_save=False)   # the trainer's own layout
    root = os.path.abspath(os.path.join(out, "checkpoints"))
    state = {"params": {"model": params}, "step": np.asarray(0, np.int32)}
    mngr.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()
    mngr.close()
    return os.path.join(root, "0")


@dataclasses.dataclass(frozen=True)
class Converted:
    """An open_clip checkpoint in xmodal's terms, in memory (``convert`` writes it)."""
    model_spec: dict      # the two_tower ``model`` node
    params: dict          # its parameter tree (numpy float32), the trainer's params["model"]
    arch: dict            # sizes read from the config
    vocab_path: str       # the CLIP BPE vocabulary the text tower reads
    tensors: int          # open_clip tensors converted (all of them)
    parameters: int       # their total size


def load(weights: str, config: str, vocab: str = "") -> Converted:
    """Reads and checks the config, vocabulary and weights, and maps every tensor."""
    model_cfg, preprocess_cfg = read_config(config)
    arch = architecture(model_cfg, preprocess_cfg, config)
    vocab_path = find_vocab(vocab, weights)
    from xmodal.data.clip_bpe import ClipBPETokenizer
    try:
        tokenizer = ClipBPETokenizer(vocab_path, context_length=arch["context_length"])
    except (OSError, ValueError) as e:
        raise ConvertError(str(e))
    if tokenizer.vocab_size != arch["vocab_size"]:
        raise ConvertError(f"open_clip config {config!r}: text_cfg.vocab_size="
                           f"{arch['vocab_size']}, but CLIP's BPE vocabulary {vocab_path!r} has "
                           f"{tokenizer.vocab_size} ids (the model uses another tokenizer)")
    state = check_tensors(read_weights(weights), expected_shapes(arch), weights, config)
    spec = model_spec(arch, float(state["logit_scale"]))
    params = to_xmodal(state, arch)
    check_against_model(params, spec, arch)
    return Converted(spec, params, arch, vocab_path, len(state),
                     int(sum(x.size for x in state.values())))


def convert(weights: str, config: str, out: str, vocab: str = "") -> dict:
    """Converts (``load``) and writes ``out`` (see the module docstring), only once all of
    the conversion succeeded. Returns a summary: paths, counts, the model node."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConvertError(f"--out {out!r} already exists and is not an empty folder")
    got = load(weights, config, vocab)
    os.makedirs(out, exist_ok=True)
    vocab_copy = os.path.abspath(os.path.join(out, VOCAB_NAME))
    shutil.copyfile(got.vocab_path, vocab_copy)
    source = {"format": "open_clip", "weights": os.path.abspath(weights),
              "config": os.path.abspath(config)}
    stage_spec = {
        "model": got.model_spec,
        # data.name is empty: the weights come with no data set (readers then have no class
        # names); the transform prepares inputs the way the model was trained to read them.
        "data": {"name": "", "transform": {
            "name": "image_text", "image_size": got.arch["image_size"],
            "max_text_len": got.arch["context_length"], "tokenizer": "clip_bpe",
            "vocab": vocab_copy}},
        "converted_from": source,
    }
    with open(os.path.join(out, "spec.json"), "w") as f:
        json.dump(stage_spec, f, indent=1)
    step_dir = write_checkpoint(out, got.params, {"step": 0, "stage": os.path.basename(
        os.path.abspath(out)), "converted_from": source})
    return {"out": os.path.abspath(out), "checkpoint": step_dir, "vocab": vocab_copy,
            "tensors": got.tensors, "parameters": got.parameters, "model": got.model_spec}


def describe(summary: dict) -> str:
    return (f"converted {summary['tensors']} open_clip tensors "
            f"({summary['parameters'] / 1e6:.2f} M parameters) to {summary['out']}\n"
            f"  spec.json: model two_tower + data.transform image_text (tokenizer clip_bpe)\n"
            f"  checkpoint: {summary['checkpoint']} (use as init_from, or "
            f"Embedder.from_workdir({summary['out']!r}))")
