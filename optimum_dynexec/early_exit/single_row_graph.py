"""The whole early-exit network as one OpenVINO graph for a single row: the exit decisions are `If` ops inside it.

    input_ids, attention_mask [, token_type_ids], entropy_threshold
      -> layer 1 + exit 1 -> If(entropy_1 < threshold): logits_1, 1
                             else: layer 2 + exit 2 -> If(entropy_2 < threshold): logits_2, 2
                                                       else: ... layer L + classifier: logits_L, L
      -> logits, exit_layer

Why: at batch 1 each OpenVINO call costs a fixed share beyond its kernels (binding, and re-planning a request whose
input shape changed since its last call), about a third of a MiniLM segment call on a short text (profiled in
docs/lab-notebook.md, early exit). Running segment by segment, a row pays that once per layer it runs, plus the Python between
calls; in one graph it pays it once. Batches keep the segment-by-segment path, which drops the rows that have left
(an `If` decides for the whole batch).

The graph gives the same exit layer as the segment path (and as the calibration that picked the threshold), not a
neighbour: it computes the entropy in float32 where the segment path uses numpy's float64, so rows whose entropy
lies within `DECISION_MARGIN` of the threshold come back with a negative `exit_layer`, and the caller re-runs them on
the segments. Elsewhere the two precisions cannot disagree.
"""

from typing import Sequence

import numpy as np
import openvino
from openvino import opset13 as ops

THRESHOLD_INPUT = "entropy_threshold"
# Normalised entropies are in [0, 1]; float32 rounding of the softmax and the entropy sum stays below 1e-6.
DECISION_MARGIN = 1e-4


def build_single_row_graph(
    segments: Sequence[openvino.Model], exit_temperatures: Sequence[float], num_labels: int
) -> openvino.Model:
    """Chain the per-layer `segments` (as exported, first to last) into one model with nested `If` exits.

    Inputs: the first segment's, plus a scalar float32 `entropy_threshold`. Outputs: `logits` [1, num_labels] and
    `exit_layer` [1] (1-based; negated when the row's entropy at that layer was within `DECISION_MARGIN` of the
    threshold). The segments are cloned, never modified.
    """
    if len(exit_temperatures) != len(segments):
        raise ValueError(f"Got {len(segments)} segments but {len(exit_temperatures)} exit temperatures.")
    first = segments[0].clone()
    threshold = ops.parameter([], openvino.Type.f32, name=THRESHOLD_INPUT)
    threshold.output(0).get_tensor().set_names({THRESHOLD_INPUT})
    mask = next(parameter.output(0) for parameter in first.get_parameters()
                if "attention_mask" in parameter.output(0).get_names())
    builder = _Builder(segments, exit_temperatures, num_labels)
    logits, exit_layer = builder.from_layer(1, _results_by_name(first), mask, threshold.output(0))
    logits_result, exit_layer_result = ops.result(logits), ops.result(exit_layer)
    logits_result.output(0).get_tensor().set_names({"logits"})
    exit_layer_result.output(0).get_tensor().set_names({"exit_layer"})
    return openvino.Model([logits_result, exit_layer_result], [*first.get_parameters(), threshold], "early_exit_single_row")


class _Builder:
    def __init__(self, segments, exit_temperatures, num_labels):
        self.segments = segments
        self.exit_temperatures = exit_temperatures
        self.num_labels = num_labels

    def from_layer(self, layer: int, outputs: dict, mask, threshold):
        """`outputs`: layer `layer`'s segment outputs by name. Returns the (logits, exit_layer) of layers `layer..L`."""
        if layer == len(self.segments):
            return outputs["logits"], _int64([layer])
        entropy = self._normalised_entropy(outputs["logits"], self.exit_temperatures[layer - 1])
        batch_axis = _int64([0])
        leaves = ops.reduce_logical_and(ops.less(entropy, ops.add(threshold, _float32(DECISION_MARGIN))), batch_axis)
        clearly_leaves = ops.reduce_logical_and(ops.less(entropy, ops.subtract(threshold, _float32(DECISION_MARGIN))), batch_axis)
        signed_layer = ops.select(clearly_leaves, _int64([layer]), _int64([-layer]))

        exit_branch = _Body(("logits", outputs["logits"]), ("exit_layer", signed_layer.output(0)))
        exit_branch.finish(*exit_branch.parameters)

        continue_branch = _Body(("hidden_states", outputs["hidden_states"]), ("attention_mask", mask), (THRESHOLD_INPUT, threshold))
        hidden, inner_mask, inner_threshold = continue_branch.parameters
        next_segment = self.segments[layer].clone()
        for parameter, source in zip(next_segment.get_parameters(), (hidden, inner_mask)):
            for consumer in list(parameter.output(0).get_target_inputs()):
                consumer.replace_source_output(source)
        continue_branch.finish(*self.from_layer(layer + 1, _results_by_name(next_segment), inner_mask, inner_threshold))

        return _if(leaves.output(0), exit_branch, continue_branch)

    def _normalised_entropy(self, logits, temperature: float):
        """`calibration.normalised_entropies` in graph ops: H(softmax(logits / T)) / log(num_labels), one per row."""
        log_probabilities = ops.log_softmax(ops.divide(logits, _float32(temperature)), -1)
        entropy = ops.negative(ops.reduce_sum(ops.multiply(ops.exp(log_probabilities), log_probabilities), _int64([-1])))
        return ops.divide(entropy, _float32(np.log(max(self.num_labels, 2))))


class _Body:
    """A branch of an `If`: one Parameter per outer value it reads, its results set by `finish`."""

    def __init__(self, *named_inputs):
        self.inputs = named_inputs
        self.parameters = [
            ops.parameter(source.get_partial_shape(), source.get_element_type(), name=name).output(0)
            for name, source in named_inputs
        ]
        self.model = None

    def finish(self, logits, exit_layer):
        self.model = openvino.Model(
            [ops.result(logits), ops.result(exit_layer)], [parameter.get_node() for parameter in self.parameters]
        )


def _if(condition, then_branch: "_Body", else_branch: "_Body"):
    """An `If` on `condition` between two finished `_Body`s with the same results; returns its outputs."""
    decision = ops.if_op(condition)
    decision.set_then_body(then_branch.model)
    decision.set_else_body(else_branch.model)
    for (_, source), parameter in zip(then_branch.inputs, then_branch.parameters):
        decision.set_input(source, parameter.get_node(), None)
    for (_, source), parameter in zip(else_branch.inputs, else_branch.parameters):
        decision.set_input(source, None, parameter.get_node())
    return tuple(decision.set_output(then_result, else_result)
                 for then_result, else_result in zip(then_branch.model.get_results(), else_branch.model.get_results()))


def _results_by_name(model: openvino.Model) -> dict:
    """A segment's outputs by tensor name, as the values feeding its Result nodes (so they can be wired onwards)."""
    outputs = {}
    for result in model.get_results():
        names = result.output(0).get_names()
        name = "logits" if "logits" in names else "hidden_states"
        outputs[name] = result.input_value(0)
    return outputs


def _int64(values):
    return ops.constant(np.array(values, dtype=np.int64)).output(0)


def _float32(value):
    return ops.constant(np.array(value, dtype=np.float32)).output(0)


class RowGraphs:
    """The single-row graph compiled twice over: once with a dynamic sequence axis, and once per short length.

    Why: on the CPU plugin a dynamic-shape graph re-plans its nodes whenever the input shape differs from its previous
    call, and texts change length at nearly every call; a graph compiled for one fixed length plans once. A row of up
    to `bucket * max_graphs` tokens is right-padded (masked tokens) to the next multiple of `bucket` and runs on the
    graph compiled for that length; longer rows, where the layers' work outweighs the planning, run on the dynamic
    graph. All of them are compiled here, with the model: compiled at first use, each would stall the first text
    of its length by a whole compilation. Which graph a length takes never depends on what ran before, so a row gives
    the same result on every call. Each fixed-length graph holds its own copy of the weights: `max_graphs` bounds
    the memory, 0 turns this off. The speed-up it buys is in docs/benchmarks.md (early exit).

    A fixed-length graph's inputs are numpy buffers bound to its request once, so a call only copies the row in.
    """

    def __init__(self, graph: openvino.Model, compile_graph, bucket: int = 8, max_graphs: int = 4, max_length=None):
        self.graph = graph
        self.compile_graph = compile_graph  # openvino.Model -> openvino.CompiledModel
        self.bucket = bucket
        self.longest = bucket * max_graphs if max_length is None else min(bucket * max_graphs, max_length)
        self.dynamic = compile_graph(graph).create_infer_request()
        self.fixed = {}  # padded length -> (infer request, {input name: the buffer bound to it})
        for padded in range(bucket, self.longest + 1, bucket):
            self.fixed[padded] = self._compile_fixed(padded)

    def fixed_length(self, length: int):
        """`(infer request, input buffers)` of the graph for rows of `length` tokens padded to their bucket, or None
        when such rows run on `self.dynamic`."""
        return self.fixed.get(-(-length // self.bucket) * self.bucket)

    def _compile_fixed(self, padded: int):
        graph = self.graph.clone()
        graph.reshape({port.any_name: openvino.PartialShape([1, padded])
                       for port in graph.inputs if port.any_name != THRESHOLD_INPUT})
        request = self.compile_graph(graph).create_infer_request()
        buffers = {}
        for port in request.model_inputs:
            buffers[port.any_name] = np.zeros(tuple(port.get_shape()), dtype=port.get_element_type().to_dtype())
            request.set_tensor(port.any_name, openvino.Tensor(buffers[port.any_name], shared_memory=True))
        return request, buffers
