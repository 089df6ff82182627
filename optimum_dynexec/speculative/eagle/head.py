"""The EAGLE draft head: a torch module, the published checkpoint format, and the OpenVINO exports EAGLE needs.

EAGLE (Li et al. 2024, arXiv 2401.15077) drafts at the *feature* level: the head reads the target's last hidden
feature `f_i` (the post-norm hidden state that feeds `lm_head`) together with the embedding of the token that
followed, `x_{i+1}`, and predicts the next feature `f_{i+1}`; the target's own frozen `lm_head` turns predicted
features into tokens. Architecture, as published:

    h = fc(concat(embed(x_{i+1}), f_i))        fc: 2*hidden -> hidden
    f_{i+1} ~ decoder_layer(h)                 one decoder layer (the target's family's when it has a Llama-like
                                               layout, else Llama's), without its input norm
    p(x_{i+2}) = softmax(lm_head(f_{i+1}))     the target's lm_head, frozen

Published heads (e.g. the `yuhuili/EAGLE-*` checkpoints) are a LLaMA-style `config.json` with
`num_hidden_layers: 1` and weights named `fc.weight` (+ `fc.bias`), `layers.0.*` and optionally
`embed_tokens.weight`, in `model.safetensors` or `pytorch_model.bin`. `load_eagle_head` reads that format;
`save_eagle_head` writes it (so heads trained here load elsewhere too).

Its OpenVINO graphs are built in `graphs.py`.
"""

import json
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ...utils.io import atomic_directory
from .eagle3 import Eagle3Head, is_eagle3_config, load_eagle3_head
from .head_files import HEAD_CONFIG, HEAD_WEIGHTS_BIN, HEAD_WEIGHTS_SAFETENSORS, read_head_weights


# Weights that belong to the target, not to the head: never saved with a head, refused when a head brings them
# with the wrong shape.
_OPTIONAL_HEAD_KEYS = ("embed_tokens.weight", "fc.bias", "layers.0.input_layernorm.weight")


class EagleHead(nn.Module):
    """The EAGLE-1/2 draft head: `fc(concat(embed(token), feature))` then one decoder layer of the target's family.

    Args:
        config: a transformers config of the target's family with `num_hidden_layers=1` (the head's own
            `config.json`). Its `hidden_size` and `vocab_size` must equal the target's.
        fc_bias: whether `fc` has a bias (the original EAGLE heads do).
        input_layernorm: whether the decoder layer normalises its input. EAGLE drops that norm (the fc output
            goes straight into attention); heads that ship `layers.0.input_layernorm.weight` keep it.

    `embed_tokens` and `lm_head` are the target's and frozen (`attach_target` copies them in); `forward` returns
    predicted features, `lm_head(features)` the logits.
    """

    def __init__(self, config, fc_bias: bool = True, input_layernorm: bool = False):
        super().__init__()
        config = _head_config(config)
        base = _head_base(config)
        self.config = config
        self.embed_tokens = base.embed_tokens
        self.fc = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=fc_bias)
        self.layers = nn.ModuleList([base.layers[0]])
        if not input_layernorm:
            self.layers[0].input_layernorm = nn.Identity()
        self.rotary_emb = base.rotary_emb
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.embed_tokens.weight.requires_grad_(False)
        self.lm_head.weight.requires_grad_(False)

    @property
    def has_input_layernorm(self) -> bool:
        return not isinstance(self.layers[0].input_layernorm, nn.Identity)

    def attach_target(self, target, copy_embeddings: bool = True) -> "EagleHead":
        """Take the target's (`*ForCausalLM`) `lm_head` and, unless the head brought its own, its embedding."""
        lm_head = target.get_output_embeddings().weight
        embeddings = target.get_input_embeddings().weight
        check_head_matches_target(self.config, lm_head.shape[1], lm_head.shape[0])
        with torch.no_grad():
            self.lm_head.weight.copy_(lm_head.detach().float())
            if copy_embeddings:
                self.embed_tokens.weight.copy_(embeddings.detach().float())
        return self

    def forward(self, input_ids, features, position_ids, attention_mask, past_key_values=None):
        """Predicted features `[batch, n, hidden]` for `n` (feature, next token) pairs.

        `attention_mask` is additive, `[batch, 1, n, past + n]` (0 where attended, a large negative elsewhere);
        `past_key_values` is a cache object with `update(key, value, layer_idx)` or `None`.
        """
        embeddings = self.embed_tokens(input_ids)
        hidden = self.fc(torch.cat([embeddings, features.to(embeddings.dtype)], dim=-1))
        position_embeddings = self.rotary_emb(hidden, position_ids)
        output = self.layers[0](
            hidden,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
            position_embeddings=position_embeddings,
        )
        return output[0] if isinstance(output, tuple) else output

    def logits(self, features):
        """Logits of predicted features: the target's own `lm_head`."""
        return self.lm_head(features)

    def head_state_dict(self, include_embeddings: bool = False) -> dict:
        """The head's own weights under the published key names (`fc.*`, `layers.0.*`, `embed_tokens.weight`)."""
        state = {}
        for name, tensor in self.state_dict().items():
            if name.startswith("lm_head.") or name.startswith("rotary_emb."):
                continue
            if name.startswith("embed_tokens.") and not include_embeddings:
                continue
            state[name] = tensor.detach().contiguous()
        return state


def _head_config(config):
    """A copy of `config` with one hidden layer and SDPA attention (traced into OpenVINO's SDPA op)."""
    config = config.__class__.from_dict(config.to_dict())
    config.num_hidden_layers = 1
    if getattr(config, "layer_types", None):  # per-layer attention kinds (Qwen2, Qwen3, ...): the first layer's
        config.layer_types = list(config.layer_types[:1])
    config._attn_implementation = "sdpa"
    return config


_MIXTURE_OF_EXPERTS_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


def _unsupported_family(model_type: str, reason: str) -> str:
    return (f"This EAGLE head's config is of the `{model_type}` family, whose decoder layer cannot serve as a head "
            f"here: {reason}. Use a head with a Llama-style config (what EAGLE publishes; `optimum-cli dynexec "
            "train-eagle` writes one for targets of any family).")


def _head_base(config):
    """The one-layer model of `config`'s family whose layer becomes the head; a `ValueError` saying why when that
    family's layer cannot serve as one here."""
    from transformers import AutoModel

    if any(getattr(config, key, None) for key in _MIXTURE_OF_EXPERTS_KEYS):
        raise ValueError(_unsupported_family(config.model_type, "its decoder layers are mixtures of experts, which "
                                                                "this package does not export as a head"))
    base = AutoModel.from_config(config)
    if not all(hasattr(base, name) for name in ("embed_tokens", "layers", "rotary_emb")):
        raise ValueError(_unsupported_family(config.model_type, "its layers are not laid out as Llama's"))
    return base


def eagle_config_from_target(target_config):
    """The head config for a target: the target's config with `num_hidden_layers=1` (what EAGLE publishes) when
    one of its decoder layers can serve as the head; otherwise (GPT-2, GPT-NeoX, Falcon, mixture-of-experts, ...)
    a Llama-style layer of the target's sizes, as EAGLE's own code uses for every target. The head only has to
    read the target's features and embeddings: its layer need not be the target's kind."""
    config = _head_config(target_config)
    try:
        with torch.device("meta"):  # only the layout is checked: allocate no weights (a large vocabulary's are GBs)
            _head_base(config)
    except ValueError:
        return _llama_style_config(target_config)
    config.architectures = ["LlamaForCausalLM"] if config.model_type == "llama" else config.architectures
    return config


def _llama_style_config(target_config):
    from transformers import LlamaConfig

    hidden, heads = target_config.hidden_size, target_config.num_attention_heads
    intermediate = (getattr(target_config, "intermediate_size", None) or getattr(target_config, "n_inner", None)
                    or getattr(target_config, "ffn_dim", None) or 4 * hidden)
    config = LlamaConfig(
        vocab_size=target_config.vocab_size, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=1,
        num_attention_heads=heads,
        num_key_value_heads=getattr(target_config, "num_key_value_heads", None) or heads,
        max_position_embeddings=getattr(target_config, "max_position_embeddings", None) or 2048,
        architectures=["LlamaForCausalLM"],
    )
    return _head_config(config)


def check_head_matches_target(head_config, target_hidden_size: int, target_vocab_size: int) -> None:
    """Raise a `ValueError` when a head was trained for another target (different hidden size or vocabulary)."""
    if head_config.hidden_size != target_hidden_size:
        raise ValueError(
            f"The EAGLE head has hidden_size={head_config.hidden_size} but the target's features have "
            f"{target_hidden_size}: `eagle_head` must be a head trained for this target "
            "(train one with `optimum-cli dynexec train-eagle --model <target>`)."
        )
    if head_config.vocab_size != target_vocab_size:
        raise ValueError(
            f"The EAGLE head has vocab_size={head_config.vocab_size} but the target's lm_head has "
            f"{target_vocab_size} rows: `eagle_head` must be a head trained for this target."
        )


# ------------------------------------------------------------------------------------------------ published format


def load_eagle_head(head_dir: Union[str, Path], target=None):
    """Load an EAGLE head saved in the published format; with `target` (a transformers causal LM), attach its
    `lm_head` (always) and embedding (when the head did not bring `embed_tokens.weight`).

    An EAGLE-3 head (`eagle3.is_eagle3_config`) loads as an `eagle3.Eagle3Head`, an EAGLE-1/2 head as `EagleHead`.

    Raises `ValueError` for a folder that is not an EAGLE head or a head whose shapes do not fit the target.
    """
    from transformers import AutoConfig, LlamaConfig

    head_dir = Path(head_dir)
    if not (head_dir / HEAD_CONFIG).is_file():
        raise ValueError(f"`eagle_head` folder {head_dir} has no {HEAD_CONFIG}; an EAGLE head folder needs one.")
    config_dict = json.loads((head_dir / HEAD_CONFIG).read_text())
    if is_eagle3_config(config_dict):
        weights = {name.removeprefix("model."): tensor for name, tensor in read_head_weights(head_dir).items()}
        return load_eagle3_head(head_dir, weights, config_dict, target)
    if "model_type" in config_dict:
        config = AutoConfig.for_model(**config_dict)
    else:  # the first EAGLE releases wrote bare LLaMA configs
        config = LlamaConfig(**config_dict)
    if config.num_hidden_layers != 1:
        raise ValueError(
            f"{head_dir / HEAD_CONFIG} has num_hidden_layers={config.num_hidden_layers}; an EAGLE head has exactly "
            "one decoder layer."
        )
    weights = read_head_weights(head_dir)
    weights = {name.removeprefix("model."): tensor for name, tensor in weights.items()}
    if config.model_type == "llama":
        # Heads for biased targets (Qwen2's q/k/v projections) ship biases with a LLaMA config: give the layer
        # biases; the ones the head does not ship stay zero, which is no bias at all.
        config.attention_bias = config.attention_bias or any(
            name.startswith("layers.0.self_attn.") and name.endswith("_proj.bias") for name in weights)
        config.mlp_bias = config.mlp_bias or any(
            name.startswith("layers.0.mlp.") and name.endswith("_proj.bias") for name in weights)
    head = EagleHead(
        config,
        fc_bias="fc.bias" in weights,
        input_layernorm="layers.0.input_layernorm.weight" in weights,
    )
    expected = set(head.head_state_dict(include_embeddings=True))
    for name in expected - set(weights):
        if name.endswith("_proj.bias"):
            weights[name] = torch.zeros_like(head.state_dict()[name])
    missing = sorted(expected - set(weights) - {"embed_tokens.weight"})
    unexpected = sorted(set(weights) - expected - {"lm_head.weight"})
    if missing or unexpected:
        raise ValueError(
            f"{head_dir} is not an EAGLE head in the published format: missing {missing[:6]}, unexpected "
            f"{unexpected[:6]} (expected fc.weight, layers.0.self_attn.*, layers.0.mlp.*, ...)."
        )
    weights.pop("lm_head.weight", None)
    head.load_state_dict({name: tensor.float() for name, tensor in weights.items()}, strict=False)
    head.float().eval()
    if target is not None:
        head.attach_target(target, copy_embeddings="embed_tokens.weight" not in weights)
    return head


def save_eagle_head(head, save_directory: Union[str, Path], include_embeddings: Optional[bool] = None,
                    safe_serialization: bool = True) -> None:
    """Write `config.json` and the head's weights in the published format (`EagleHead` or `eagle3.Eagle3Head`);
    the folder appears complete or not at all (written to a temporary folder, then renamed).

    `include_embeddings` (default: only for EAGLE-3 heads, whose published layout carries them) also writes the
    target's embedding as `embed_tokens.weight`."""
    if include_embeddings is None:
        include_embeddings = isinstance(head, Eagle3Head)
    with atomic_directory(save_directory) as staging:
        config = head.config.to_dict()
        config.pop("_attn_implementation", None)
        config["num_hidden_layers"] = 1
        (staging / HEAD_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = head.head_state_dict(include_embeddings=include_embeddings)
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(state, staging / HEAD_WEIGHTS_SAFETENSORS, metadata={"format": "pt"})
        else:
            torch.save(state, staging / HEAD_WEIGHTS_BIN)
