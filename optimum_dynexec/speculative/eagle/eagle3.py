"""The EAGLE-3 draft head (Li et al. 2025, arXiv 2503.01840): fused low/middle/high target features, a reduced
draft vocabulary, and the Hugging Face layout EAGLE-3 heads are published in (and openvino-genai serves).

Against EAGLE-1/2 (`head.py`), the head reads more of the target and scores less of the vocabulary:

    g_i = fc(concat(a_i, b_i, c_i))              a, b, c: the outputs of three target decoder layers (low, middle,
                                                 high); fc: 3*hidden -> hidden, no bias
    h_i = midlayer(embed(x_{i+1}), g_i)          one decoder layer whose attention reads
                                                 concat(input_layernorm(embed), hidden_norm(g)) (2*hidden wide),
                                                 with the residual stream on g
    p(x_{i+2}) = softmax(lm_head(norm(h_i)))     the head's own norm and lm_head over `draft_vocab_size` tokens;
                                                 draft token d is target token d + d2t[d]

Drafting further, the head reads its own `h_i` in place of `g_i` (no fc): the feature that flows from step to step is
the layer's output before `norm`. Training unrolls exactly that ("training-time test", `training.py`).

The published layout (SpecForge, AngelSlim, the EAGLE repository) is a Llama `config.json` with
`"architectures": ["LlamaForCausalLMEagle3"]`, `num_hidden_layers: 1`, `draft_vocab_size`, optionally
`target_hidden_size` and `eagle_config.eagle_aux_hidden_state_layer_ids` (which layers' outputs are fused), and
weights `fc.weight`, `midlayer.*`, `norm.weight`, `lm_head.weight`, `d2t`, `t2d`, optionally `embed_tokens.weight`.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .head_files import read_head_weights


EAGLE3_ARCHITECTURE = "LlamaForCausalLMEagle3"
_LAYER_IDS_KEY = "eagle_aux_hidden_state_layer_ids"


def is_eagle3_config(config: dict) -> bool:
    """Whether a head's `config.json` (as a dict) describes an EAGLE-3 head."""
    architectures = config.get("architectures") or []
    return "draft_vocab_size" in config or any("eagle3" in name.lower() for name in architectures)


def default_feature_layers(target_layers: int) -> List[int]:
    """The target layers whose outputs a head trained here fuses: 2, the middle one and the third from last.

    openvino-genai picks the same three when a draft IR names none, so a head trained here is fed what it was
    trained on either way (its IR names them too, `serving.py`)."""
    if target_layers < 6:
        raise ValueError(f"An EAGLE-3 head fuses three distinct target layers (2, n/2, n-3); this target has only "
                         f"{target_layers} decoder layers. Pass `feature_layers` explicitly.")
    return [2, target_layers // 2, target_layers - 3]


def _published_default_layers(target_layers: int) -> List[int]:
    # Published heads without a layer list were trained on the inputs of layers 2, n/2 and n-3 (the EAGLE
    # repository's choice), i.e. the outputs of the layers one below.
    return [1, target_layers // 2 - 1, target_layers - 4]


@dataclass(frozen=True)
class Eagle3Wiring:
    """What the target side needs to run an EAGLE-3 head: which target layers to fuse, the head's `fc` weight that
    fuses them (`[hidden, 3 * target hidden]`, applied in the target's graph) and the target token of each draft
    token."""

    feature_layers: Tuple[int, ...]
    fuse: np.ndarray
    draft_to_target: np.ndarray

    @classmethod
    def of(cls, head: "Eagle3Head") -> "Eagle3Wiring":
        return cls(tuple(head.feature_layers), head.fc.weight.detach().float().numpy().copy(), head.draft_to_target)

    @classmethod
    def read(cls, head_folder: Union[str, Path], feature_layers: Sequence[int]) -> "Eagle3Wiring":
        """From a published-layout folder's weights (`fc.weight`, `d2t`), with the layers already resolved."""
        weights = {name.removeprefix("model."): tensor for name, tensor in read_head_weights(head_folder).items()}
        d2t = weights["d2t"].long().numpy() if "d2t" in weights else np.zeros(len(weights["lm_head.weight"]),
                                                                                dtype=np.int64)
        return cls(tuple(int(layer) for layer in feature_layers), weights["fc.weight"].float().numpy().copy(),
                   np.arange(len(d2t)) + d2t)


class _Eagle3Layer(nn.Module):
    """EAGLE-3's decoder layer: attention over the normalised token embedding and feature side by side."""

    def __init__(self, config):
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP, LlamaRMSNorm

        hidden = config.hidden_size
        self.self_attn = LlamaAttention(config, layer_idx=0)
        attention = self.self_attn
        for name, outputs in (("q_proj", config.num_attention_heads), ("k_proj", config.num_key_value_heads),
                              ("v_proj", config.num_key_value_heads)):
            setattr(attention, name, nn.Linear(2 * hidden, outputs * attention.head_dim, bias=False))
        self.mlp = LlamaMLP(config)
        self.hidden_norm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        self.input_layernorm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)

    def forward(self, embeddings, features, position_embeddings, attention_mask, past_key_values=None):
        both = torch.cat([self.input_layernorm(embeddings), self.hidden_norm(features)], dim=-1)
        attended, _ = self.self_attn(both, position_embeddings=position_embeddings, attention_mask=attention_mask,
                                     past_key_values=past_key_values)
        hidden = features + attended
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class Eagle3Head(nn.Module):
    """The EAGLE-3 draft head, with the same calling convention as `EagleHead` (so one export, one drafter and one
    training loop serve both).

    Args:
        config: a `LlamaConfig` with `num_hidden_layers=1`, `draft_vocab_size`, and `eagle_config` naming the fused
            target layers (`eagle3_config_from_target` builds one).

    `forward(input_ids, features, ...)` takes either the fused target features (`3 * target_hidden_size` wide: `fc`
    projects them) or the head's own previous outputs (`hidden_size` wide) and returns the next features, before
    `norm`; `logits(features)` scores them over the draft vocabulary. `embed_tokens` is the target's, frozen.
    """

    def __init__(self, config):
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

        config = _head_config(config)
        self.config = config
        hidden = config.hidden_size
        self.target_hidden_size = getattr(config, "target_hidden_size", None) or hidden
        self.embed_tokens = nn.Embedding(config.vocab_size, hidden)
        self.embed_tokens.weight.requires_grad_(False)
        self.fc = nn.Linear(3 * self.target_hidden_size, hidden, bias=False)
        self.midlayer = _Eagle3Layer(config)
        self.norm = LlamaRMSNorm(hidden, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(hidden, config.draft_vocab_size, bias=False)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        self.register_buffer("d2t", torch.zeros(config.draft_vocab_size, dtype=torch.long))
        self.register_buffer("t2d", torch.ones(config.vocab_size, dtype=torch.bool)
                             if config.draft_vocab_size == config.vocab_size else
                             torch.zeros(config.vocab_size, dtype=torch.bool))

    @property
    def feature_layers(self) -> List[int]:
        """The target decoder layers (0-based) whose outputs `fc` fuses, low to high."""
        return list(self.config.eagle_config[_LAYER_IDS_KEY])

    @property
    def draft_to_target(self) -> np.ndarray:
        """Target token id of each draft token id."""
        return (torch.arange(len(self.d2t)) + self.d2t).numpy()

    def set_draft_vocabulary(self, target_ids: Sequence[int]) -> None:
        """Draft over these target tokens (sorted, `draft_vocab_size` of them): fills `d2t` and `t2d`."""
        target_ids = torch.as_tensor(sorted(int(i) for i in target_ids), dtype=torch.long)
        if len(target_ids) != self.config.draft_vocab_size or len(set(target_ids.tolist())) != len(target_ids):
            raise ValueError(f"The draft vocabulary needs {self.config.draft_vocab_size} distinct target token ids, "
                             f"got {len(target_ids)}.")
        self.d2t.copy_(target_ids - torch.arange(len(target_ids)))
        self.t2d.zero_()
        self.t2d[target_ids] = True

    def attach_target(self, target) -> "Eagle3Head":
        """Take the target's (`*ForCausalLM`) input embedding, which the head shares."""
        embeddings = target.get_input_embeddings().weight
        if tuple(embeddings.shape) != (self.config.vocab_size, self.config.hidden_size):
            raise ValueError(
                f"The EAGLE-3 head has vocab_size={self.config.vocab_size}, hidden_size={self.config.hidden_size} but "
                f"the target's embedding is {tuple(embeddings.shape)}: `eagle_head` must be a head trained for this "
                "target (train one with `optimum-cli dynexec train-eagle --eagle3 --model <target>`).")
        layers = target.config.num_hidden_layers
        if any(not 0 <= layer < layers for layer in self.feature_layers):
            raise ValueError(f"The EAGLE-3 head fuses target layers {self.feature_layers}, but the target has "
                             f"{layers} decoder layers: `eagle_head` was trained for another target.")
        with torch.no_grad():
            self.embed_tokens.weight.copy_(embeddings.detach().float())
        return self

    def forward(self, input_ids, features, position_ids, attention_mask, past_key_values=None):
        """Predicted features `[batch, n, hidden]` (before `norm`) for `n` (feature, next token) pairs; the mask and
        cache are as for `EagleHead.forward`."""
        embeddings = self.embed_tokens(input_ids)
        features = features.to(embeddings.dtype)
        if features.shape[-1] != self.config.hidden_size:
            features = self.fc(features)
        return self.midlayer(embeddings, features, self.rotary_emb(features, position_ids), attention_mask,
                             past_key_values)

    def logits(self, features):
        """Draft-vocabulary logits of predicted features."""
        return self.lm_head(self.norm(features))

    def head_state_dict(self, include_embeddings: bool = True) -> dict:
        """The weights under the published key names (`fc.weight`, `midlayer.*`, `norm.weight`, `lm_head.weight`,
        `d2t`, `t2d`, and `embed_tokens.weight` unless excluded)."""
        state = {}
        for name, tensor in self.state_dict().items():
            if name.startswith("rotary_emb.") or (name.startswith("embed_tokens.") and not include_embeddings):
                continue
            state[name] = tensor.detach().contiguous()
        return state


def _head_config(config):
    config = config.__class__.from_dict(config.to_dict())
    config.num_hidden_layers = 1
    config._attn_implementation = "sdpa"
    return config


def eagle3_config_from_target(target_config, draft_vocab_size: int, feature_layers: Optional[Sequence[int]] = None):
    """A Llama-style EAGLE-3 head config for a target of any family: the target's sizes, one layer, a draft
    vocabulary of `draft_vocab_size` tokens, fusing `feature_layers` (default `default_feature_layers`)."""
    from transformers import LlamaConfig

    layers = target_config.num_hidden_layers
    feature_layers = list(feature_layers) if feature_layers is not None else default_feature_layers(layers)
    if len(feature_layers) != 3 or any(not 0 <= int(layer) < layers for layer in feature_layers):
        raise ValueError(f"`feature_layers` must be three target decoder layers in [0, {layers}), got "
                         f"{feature_layers}.")
    if not 1 <= draft_vocab_size <= target_config.vocab_size:
        raise ValueError(f"`draft_vocab_size` must be in [1, {target_config.vocab_size}] (the target's vocabulary), "
                         f"got {draft_vocab_size}.")
    hidden, heads = target_config.hidden_size, target_config.num_attention_heads
    config = LlamaConfig(
        vocab_size=target_config.vocab_size, hidden_size=hidden,
        intermediate_size=getattr(target_config, "intermediate_size", None) or 4 * hidden,
        num_hidden_layers=1, num_attention_heads=heads,
        num_key_value_heads=getattr(target_config, "num_key_value_heads", None) or heads,
        head_dim=getattr(target_config, "head_dim", None) or hidden // heads,
        max_position_embeddings=getattr(target_config, "max_position_embeddings", None) or 2048,
        rms_norm_eps=getattr(target_config, "rms_norm_eps", 1e-6),
        rope_parameters=getattr(target_config, "rope_parameters", None),
        tie_word_embeddings=False,
        architectures=[EAGLE3_ARCHITECTURE],
    )
    config.draft_vocab_size = int(draft_vocab_size)
    config.target_hidden_size = hidden
    config.eagle_config = {_LAYER_IDS_KEY: [int(layer) for layer in feature_layers]}
    return _head_config(config)


def load_eagle3_head(head_dir: Union[str, Path], weights: dict, config_dict: dict, target=None) -> Eagle3Head:
    """An EAGLE-3 head from a published-layout folder's config and tensors (`head.load_eagle_head` reads them and
    calls this); with `target`, its embedding is attached (and the fused layers checked against its depth)."""
    from transformers import LlamaConfig

    config_dict = dict(config_dict)
    config_dict.pop("model_type", None)
    config = LlamaConfig(**config_dict)
    if getattr(config, "draft_vocab_size", None) is None:
        config.draft_vocab_size = config.vocab_size
    eagle_config = dict(getattr(config, "eagle_config", None) or {})
    if _LAYER_IDS_KEY not in eagle_config:
        if target is None:
            raise ValueError(f"{head_dir}/config.json names no fused layers (eagle_config.{_LAYER_IDS_KEY}); "
                             "pass the target to load it.")
        eagle_config[_LAYER_IDS_KEY] = _published_default_layers(target.config.num_hidden_layers)
    config.eagle_config = eagle_config
    head = Eagle3Head(config)
    expected = set(head.head_state_dict())
    if config.draft_vocab_size == config.vocab_size:
        weights.setdefault("d2t", torch.zeros(config.draft_vocab_size, dtype=torch.long))
        weights.setdefault("t2d", torch.ones(config.vocab_size, dtype=torch.bool))
    missing = sorted(expected - set(weights) - {"embed_tokens.weight"})
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{head_dir} is not an EAGLE-3 head in the published layout: missing {missing[:6]}, unexpected "
            f"{unexpected[:6]} (expected fc.weight, midlayer.*, norm.weight, lm_head.weight, d2t, t2d).")
    state = {name: tensor if name in ("d2t", "t2d") else tensor.float() for name, tensor in weights.items()}
    shapes = {name: tuple(tensor.shape) for name, tensor in head.state_dict().items()}
    wrong = [f"{name} {tuple(tensor.shape)} (config says {shapes[name]})" for name, tensor in state.items()
             if tuple(tensor.shape) != shapes[name]]
    if wrong:
        raise ValueError(f"{head_dir}: tensors do not match its config.json: {', '.join(wrong[:4])}.")
    head.load_state_dict(state, strict=False)
    head.d2t.copy_(state["d2t"].long())
    head.t2d.copy_(state["t2d"].bool())
    head.float().eval()
    if target is not None:
        head.attach_target(target)  # the target's embedding, as openvino-genai feeds it too
    return head
