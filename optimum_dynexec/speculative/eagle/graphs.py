"""The OpenVINO graphs EAGLE runs, both taking an additive attention mask over the cache (so a whole draft *tree* is
scored in one call) and explicit position ids:

* `target_with_features`: optimum-intel's own stateful target graph, rewritten to take a `tree_mask` and to
  return `hidden_states` (what feeds `lm_head`) next to `logits`. Rewriting the exported graph, rather than
  tracing the target again, keeps the CPU plugin's fused RoPE and SDPA kernels: a re-traced graph measured
  several times slower per call;
* `export_eagle_head`: the head (+ the target's embedding and lm_head), made stateful the way optimum-intel makes
  its graphs stateful, returning `logits` and the predicted features `hidden_states`.

Both run in `kv_cache.TreeDecoderSession`.
"""
import re
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..kv_cache import TREE_MASK_INPUT
from ..logits_rows import lm_head_matmul, with_logits_rows
from ..paged_session import FEATURES_OUTPUT
from .head import EagleHead


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
        return (self.head.logits(hidden), hidden, *cache.present)


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


def target_with_features(ov_model, feature_layers: Optional[Sequence[int]] = None, fuse=None):
    """Rewrite optimum-intel's exported target graph (a copy) so one call verifies a whole draft tree.

    The graph keeps everything optimum-intel's export gives it (stateful KV cache, fused RoPE and SDPA kernels on
    CPU), with three changes:

    * a `tree_mask` input (`[1, 1, new rows, cache slots]`, additive f32) replaces the causal mask every attention
      layer computed from `attention_mask`, so each new row sees exactly the rows the tree says (its ancestors);
    * a `hidden_states` output (`[1, n, hidden]`), the feature the head drafts from: the input of `lm_head`
      (EAGLE-1/2) or, with `feature_layers` (EAGLE-3), the outputs of those decoder layers side by side, projected
      by `fuse` (the head's `fc` weight, `[hidden, 3 * hidden]`) in the graph, as openvino-genai does too;
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
    add_feature_output(ov_model, feature_layers, fuse)
    ov_model.add_parameters([tree_mask])
    return with_logits_rows(ov_model)


def target_with_feature_output(ov_model, feature_layers: Optional[Sequence[int]] = None, fuse=None):
    """A copy of optimum-intel's exported target graph with the `hidden_states` output EAGLE drafts from (as in
    `target_with_features`) and nothing else changed: the graph chains are verified on, once rewritten to paged
    attention (`paged_session.paged_graph`)."""
    ov_model = ov_model.clone()
    attention_with_shared_mask(ov_model)  # the same targets as the tree rewrite, with the same errors
    add_feature_output(ov_model, feature_layers, fuse)
    return ov_model


def add_feature_output(ov_model, feature_layers: Optional[Sequence[int]] = None, fuse=None) -> None:
    """Give `ov_model` (in place) a `hidden_states` output: the input of `lm_head` (EAGLE-1/2) or, with
    `feature_layers` (EAGLE-3), those decoder layers' outputs side by side, projected by `fuse` (`[hidden, 3 *
    hidden]`)."""
    import openvino.opset13 as opset

    if feature_layers is None:
        feature = lm_head_matmul(ov_model).input(0).get_source_output()
    else:
        fused = opset.concat(decoder_layer_outputs(ov_model, feature_layers), axis=-1)
        weight = opset.constant(np.asarray(fuse, dtype=np.float32))
        feature = opset.matmul(fused, weight, transpose_a=False, transpose_b=True).output(0)
    features = opset.result(feature)
    features.output(0).get_tensor().set_names({FEATURES_OUTPUT})
    ov_model.add_results([features])


def decoder_layer_outputs(ov_model, layers: Sequence[int]) -> list:
    """The outputs of these decoder layers (0-based) in an optimum-intel graph: each layer's last residual `Add`
    (after its MLP), the point transformers' `output_hidden_states` reports as `hidden_states[layer + 1]`.

    Found by the layer's scope in the operation names (`layers.<i>/`), as openvino-genai finds them to serve an
    EAGLE-3 head; a `ValueError` when a layer is not there."""
    last_add = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "Add":
            continue
        match = _LAYER_SCOPE.search(op.get_friendly_name())
        if match:
            last_add[int(match.group(1))] = op  # ordered ops: a layer's last Add is the one its output comes from
    missing = [layer for layer in layers if int(layer) not in last_add]
    if missing:
        raise ValueError(f"The target graph has no decoder layers {missing} (found {len(last_add)} layers): this "
                         "EAGLE-3 head was trained for a deeper target, or the graph does not name its layers "
                         "`layers.<i>` as optimum-intel's exports do.")
    return [last_add[int(layer)].output(0) for layer in layers]


_LAYER_SCOPE = re.compile(r"layers\.(\d+)/")


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
    kernel: on the quick fixture's head a single-row call measured several times faster than stateless or stateful
    without the gather (docs/lab-notebook.md, EAGLE).
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
