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

Two OpenVINO graphs come out of this module, both taking an additive attention mask over the cache (so a whole
draft *tree* is scored in one call) and explicit position ids:

* `target_with_features`: optimum-intel's own stateful target graph, rewritten to take a `tree_mask` and to
  return `hidden_states` (what feeds `lm_head`) next to `logits`. Rewriting the exported graph, rather than
  tracing the target again, keeps the CPU plugin's fused RoPE and SDPA kernels: a re-traced graph measured
  several times slower per call;
* `export_eagle_head`: the head (+ the target's embedding and lm_head), made stateful the way optimum-intel makes
  its graphs stateful, returning `logits` and the predicted features `hidden_states`.

Both run in `kv_cache.TreeDecoderSession`.
"""

import json
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from ..utils.io import atomic_directory
from .kv_cache import LOGITS_ROWS_INPUT, TREE_MASK_INPUT


HEAD_WEIGHTS_SAFETENSORS = "model.safetensors"
HEAD_WEIGHTS_BIN = "pytorch_model.bin"
HEAD_CONFIG = "config.json"
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


def read_head_weights(head_dir: Union[str, Path]) -> dict:
    """The tensors of a published head folder (`model.safetensors` preferred, else `pytorch_model.bin`)."""
    head_dir = Path(head_dir)
    if (head_dir / HEAD_WEIGHTS_SAFETENSORS).is_file():
        from safetensors.torch import load_file

        return load_file(head_dir / HEAD_WEIGHTS_SAFETENSORS)
    if (head_dir / HEAD_WEIGHTS_BIN).is_file():
        return torch.load(head_dir / HEAD_WEIGHTS_BIN, map_location="cpu", weights_only=True)
    raise ValueError(
        f"`eagle_head` folder {head_dir} holds neither {HEAD_WEIGHTS_SAFETENSORS} nor {HEAD_WEIGHTS_BIN}: pass a "
        "folder with an EAGLE head's config.json and weights (fc.*, layers.0.*)."
    )


def load_eagle_head(head_dir: Union[str, Path], target=None) -> EagleHead:
    """Load an EAGLE head saved in the published format; with `target` (a transformers causal LM), attach its
    `lm_head` (always) and embedding (when the head did not bring `embed_tokens.weight`).

    Raises `ValueError` for a folder that is not an EAGLE head or a head whose shapes do not fit the target.
    """
    from transformers import AutoConfig, LlamaConfig

    head_dir = Path(head_dir)
    if not (head_dir / HEAD_CONFIG).is_file():
        raise ValueError(f"`eagle_head` folder {head_dir} has no {HEAD_CONFIG}; an EAGLE head folder needs one.")
    config_dict = json.loads((head_dir / HEAD_CONFIG).read_text())
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


def save_eagle_head(head: EagleHead, save_directory: Union[str, Path], include_embeddings: bool = False,
                    safe_serialization: bool = True) -> None:
    """Write `config.json` and the head's weights in the published format; the folder appears complete or not
    at all (written to a temporary folder, then renamed)."""
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


# ------------------------------------------------------------------------------------------------ OpenVINO export


class _TracedCache:
    """What transformers attention layers call `update` on: concatenates the past given as graph inputs with the
    new keys/values and remembers the results as the graph's `present` outputs."""

    def __init__(self, past: Sequence[torch.Tensor]):
        self.past = past
        self.present = [None] * len(past)

    def update(self, key, value, layer_idx, cache_kwargs=None):
        key = torch.cat([self.past[2 * layer_idx], key], dim=-2)
        value = torch.cat([self.past[2 * layer_idx + 1], value], dim=-2)
        self.present[2 * layer_idx], self.present[2 * layer_idx + 1] = key, value
        return key, value

    def get_seq_length(self, layer_idx=0):
        return self.past[0].shape[-2]


class _HeadGraph(nn.Module):
    def __init__(self, head: EagleHead):
        super().__init__()
        self.head = head

    def forward(self, input_ids, features, position_ids, attention_mask, *past):
        cache = _TracedCache(past)
        hidden = self.head(input_ids, features, position_ids, attention_mask, cache)
        return (self.head.lm_head(hidden), hidden, *cache.present)


def _kv_shape(config):
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return heads, head_dim


def _convert(module: nn.Module, inputs: dict, layers: int, config, output_names: Sequence[str]):
    """Trace `module(**inputs, *past)` into an OpenVINO model with dynamic sequence lengths and named ports."""
    import openvino as ov

    kv_heads, head_dim = _kv_shape(config)
    past_length, new = 3, inputs["input_ids"].shape[1]
    past = []
    for _ in range(layers):
        past += [torch.randn(1, kv_heads, past_length, head_dim), torch.randn(1, kv_heads, past_length, head_dim)]
    inputs["attention_mask"] = torch.zeros(1, 1, new, past_length + new)
    names = list(inputs)
    example = tuple(inputs.values()) + tuple(past)
    shapes = []
    for name, tensor in inputs.items():
        if name == "attention_mask":
            shapes.append(([1, 1, -1, -1], ov.Type.f32))
        elif name == "features":
            shapes.append(([1, -1, tensor.shape[-1]], ov.Type.f32))
        else:
            shapes.append(([1, -1], ov.Type.i64))
    shapes += [([1, kv_heads, -1, head_dim], ov.Type.f32)] * (2 * layers)
    with torch.no_grad():
        ov_model = ov.convert_model(module.eval(), example_input=example, input=shapes)
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    for port, name in zip(ov_model.inputs, names + past_names):
        port.get_tensor().set_names({name})
    present_names = [name.replace("past_key_values", "present") for name in past_names]
    for port, name in zip(ov_model.outputs, list(output_names) + present_names):
        port.get_tensor().set_names({name})
    return ov_model


def target_with_features(ov_model):
    """Rewrite optimum-intel's exported target graph (a copy) so one call verifies a whole draft tree.

    The graph keeps everything optimum-intel's export gives it (stateful KV cache, fused RoPE and SDPA kernels on
    CPU), with two changes:

    * a `tree_mask` input (`[1, 1, new rows, cache slots]`, additive f32) replaces the causal mask every attention
      layer computed from `attention_mask`, so each new row sees exactly the rows the tree says (its ancestors);
    * a `hidden_states` output (`[1, n, hidden]`): the input of `lm_head`, the feature EAGLE drafts from;
    * a `logits_rows` input (`with_logits_rows`): the rows `logits` are computed for.

    Raises `ValueError` for graphs without one shared attention mask feeding `ScaledDotProductAttention`
    (exports that did not go through SDPA), saying what to do.
    """
    import openvino as ov
    import openvino.opset13 as opset

    ov_model = ov_model.clone()
    attention = attention_with_shared_mask(ov_model)
    tree_mask = opset.parameter(ov.PartialShape([-1, 1, -1, -1]), ov.Type.f32, name=TREE_MASK_INPUT)
    tree_mask.output(0).get_tensor().set_names({TREE_MASK_INPUT})
    for op in attention:
        op.input(3).replace_source_output(tree_mask.output(0))

    features = opset.result(_lm_head_matmul(ov_model).input(0).get_source_output())
    features.output(0).get_tensor().set_names({"hidden_states"})
    ov_model.add_results([features])
    ov_model.add_parameters([tree_mask])
    return with_logits_rows(ov_model)


def _lm_head_matmul(ov_model):
    logits = next(output for output in ov_model.outputs if "logits" in output.get_names())
    node = logits.get_node().input(0).get_source_output().get_node()
    while node.get_type_name() != "MatMul":  # past any scaling / conversion after lm_head
        if node.get_input_size() == 0:
            raise ValueError("Could not find the lm_head MatMul that produces the logits.")
        node = node.input(0).get_source_output().get_node()
    return node


def with_logits_rows(ov_model, row_axis: int = 1):
    """Give the graph a `logits_rows` input (`[k]` int64): `lm_head` scores only those of the call's rows (along
    `row_axis` of its input: 1 in optimum-intel's `[batch, rows, hidden]` graphs, 0 in paged-attention graphs).

    A prompt's prefill and the head's calls need the logits of their last row only, while `lm_head` is the largest
    matrix of a one-layer head (45% of its per-row work, on every row of a prompt or of the accepted pairs fed back).
    `hidden_states` still covers every row. Changes `ov_model` in place; a graph that has the input is returned as is.
    """
    import openvino as ov
    import openvino.opset13 as opset

    if any(LOGITS_ROWS_INPUT in port.get_names() for port in ov_model.inputs):
        return ov_model
    rows = opset.parameter(ov.PartialShape([-1]), ov.Type.i64, name=LOGITS_ROWS_INPUT)
    rows.output(0).get_tensor().set_names({LOGITS_ROWS_INPUT})
    lm_head = _lm_head_matmul(ov_model)
    features = lm_head.input(0).get_source_output()
    lm_head.input(0).replace_source_output(opset.gather(features, rows, axis=row_axis).output(0))
    ov_model.add_parameters([rows])
    ov_model.validate_nodes_and_infer_types()
    return ov_model


def attention_with_shared_mask(ov_model) -> list:
    """The graph's `ScaledDotProductAttention` operations, which must all take one shared attention mask (what
    `target_with_features` replaces), in a graph that takes explicit `position_ids` (each tree node is placed at
    its depth); a `ValueError` saying what to do otherwise. Reads the graph, copies nothing."""
    if not any("position_ids" in port.get_names() for port in ov_model.inputs):
        raise ValueError("EAGLE verifies a draft tree in one call, which needs a target that takes explicit "
                         "`position_ids` (rotary or learned positions); this target's graph has none (e.g. BLOOM's "
                         "ALiBi). Speculate with a draft model (`draft_model=`) or prompt lookup instead.")
    attention = [op for op in ov_model.get_ordered_ops() if op.get_type_name() == "ScaledDotProductAttention"]
    masks = {op.input(3).get_source_output() for op in attention if op.get_input_size() > 3}
    if len(masks) > 1:
        raise ValueError(
            f"EAGLE replaces the target's attention mask by the draft tree's, but this target's layers use "
            f"{len(masks)} different masks (e.g. local or sliding-window layers beside global ones, as in GPT-Neo "
            "and Gemma 2), which one tree mask cannot stand for. Speculate with a draft model (`draft_model=`) or "
            "prompt lookup instead."
        )
    if not attention or len(masks) != 1 or any(op.get_input_size() <= 3 for op in attention):
        raise ValueError(
            "EAGLE needs a target graph whose attention runs as OpenVINO `ScaledDotProductAttention` with an explicit "
            f"mask; this graph has {len(attention)} such operations ({len(masks)} masks), as optimum-intel exports "
            "some families (e.g. XGLM) or exported with older versions. Re-exporting with the current optimum-intel "
            "(`export=True`) helps only in the latter case; otherwise speculate with a draft model (`draft_model=`) "
            "or prompt lookup."
        )
    return attention


def export_eagle_head(head: EagleHead):
    """The head as a stateful OpenVINO model: its KV cache lives in the model's state, like optimum-intel's.

    Inputs: `input_ids` `[1, n]` (the token after each feature), `features` `[1, n, hidden]`, `position_ids`,
    `tree_mask` (additive, `[1, 1, n, cache slots]`), `logits_rows` (`with_logits_rows`). Outputs: `logits` (of those
    rows), `hidden_states` (the predicted next features, every row). It also takes `beam_idx`, as optimum-intel's
    graphs do. Made stateful the way optimum-intel makes its exports stateful (a `beam_idx` gather before the cache,
    then the state transformation), because that is the pattern the CPU plugin fuses into one SDPA-with-KV-cache
    kernel: measured on the quick fixture's head, 0.56 ms per single-row call, against 2.2 ms stateless and 3.9 ms
    stateful without the gather.
    """
    from optimum.exporters.openvino.stateful import fuse_cache_reorder, make_stateful

    head = head.float().eval()
    hidden_size = head.config.hidden_size
    example = {
        "input_ids": torch.tensor([[1, 2]]),
        "features": torch.randn(1, 2, hidden_size),
        "position_ids": torch.tensor([[3, 4]]),
    }
    ov_model = _convert(_HeadGraph(head), example, 1, head.config, ("logits", "hidden_states"))
    ov_model.input("attention_mask").get_tensor().set_names({TREE_MASK_INPUT})
    past = [f"past_key_values.0.{kind}" for kind in ("key", "value")]
    other_inputs = [port for port in ov_model.inputs if port.get_any_name() not in past]
    fuse_cache_reorder(ov_model, other_inputs, past, gather_dim=0)
    make_stateful(ov_model, other_inputs, past, [name.replace("past_key_values", "present") for name in past],
                  batch_dim=0)
    return with_logits_rows(ov_model)
