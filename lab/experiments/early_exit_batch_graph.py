"""Does compacting the batch inside one graph beat the segment-by-segment loop? (lab script, not installed)

    python -m lab.experiments.early_exit_batch_graph --model <exported early-exit folder> --data <folder with test.csv> \
        [--rows 1024] [--batch 32] [--repeats 5] [--ov-config '{"INFERENCE_NUM_THREADS": "1"}']

Builds the whole early-exit network as one OpenVINO graph for any batch: after each exit an `If` returns when every
row has left, and otherwise gathers the rows that stay (`NonZero` + `Gather`), trims the padding none of them
attends to, runs the next layer and scatters its results back (`ScatterUpdate`). One call per batch instead of one
per layer, no Python between layers. Checks it predicts as the model's `forward` does, then times plain
optimum-intel, `forward` (segments) and the graph, interleaved, medians. Result: docs/lab-notebook.md, early exit.
"""

import numpy as np
import openvino
from openvino import opset13 as ops

from optimum_dynexec.early_exit.single_row_graph import (
    DECISION_MARGIN, THRESHOLD_INPUT, _Body, _Builder, _if, _float32, _int64, _results_by_name)


def build_batch_graph(segments, exit_temperatures, num_labels):
    first = segments[0].clone()
    threshold = ops.parameter([], openvino.Type.f32, name=THRESHOLD_INPUT)
    threshold.output(0).get_tensor().set_names({THRESHOLD_INPUT})
    mask = next(p.output(0) for p in first.get_parameters() if "attention_mask" in p.output(0).get_names())
    builder = _BatchBuilder(segments, exit_temperatures, num_labels)
    logits, exit_layer = builder.from_layer(1, _results_by_name(first), mask, threshold.output(0))
    logits_result, exit_layer_result = ops.result(logits), ops.result(exit_layer)
    logits_result.output(0).get_tensor().set_names({"logits"})
    exit_layer_result.output(0).get_tensor().set_names({"exit_layer"})
    return openvino.Model([logits_result, exit_layer_result], [*first.get_parameters(), threshold], "early_exit")


class _BatchBuilder(_Builder):
    """The single-row graph's builder, with row compaction between layers."""

    def from_layer(self, layer, outputs, mask, threshold):
        logits = outputs["logits"]
        rows = ops.gather(ops.shape_of(logits), _int64([0]), _int64(0))
        if layer == len(self.segments):
            return logits, ops.broadcast(_int64([layer]), rows).output(0)
        entropy = self._normalised_entropy(logits, self.exit_temperatures[layer - 1])
        leaves = ops.less(entropy, ops.add(threshold, _float32(DECISION_MARGIN)))
        clearly = ops.less(entropy, ops.subtract(threshold, _float32(DECISION_MARGIN)))
        signed = ops.select(clearly, _int64([layer]), _int64([-layer])).output(0)  # [n]
        all_leave = ops.reduce_logical_and(leaves, _int64([0]))

        exit_branch = _Body(("logits", logits), ("exit_layer", signed))
        exit_branch.finish(*exit_branch.parameters)

        go_on = _Body(("hidden_states", outputs["hidden_states"]), ("attention_mask", mask),
                      (THRESHOLD_INPUT, threshold), ("logits", logits), ("exit_layer", signed),
                      ("leaves", leaves.output(0)))
        hidden, inner_mask, inner_threshold, inner_logits, inner_layer, inner_leaves = go_on.parameters
        staying = ops.reshape(ops.non_zero(ops.logical_not(inner_leaves), "i64"), _int64([-1]), False)
        hidden = ops.gather(hidden, staying, _int64(0))
        inner_mask = ops.gather(inner_mask, staying, _int64(0))
        # Drop the trailing columns no staying row attends to (right padding): length = last attended column + 1.
        columns = ops.gather(ops.shape_of(inner_mask), _int64([1]), _int64(0))

        used = ops.reduce_max(inner_mask, _int64([0]))  # [s]
        numbered = ops.multiply(used, ops.range(_int64(1), ops.add(ops.squeeze(columns, _int64([0])), _int64(1)), _int64(1), "i64"))
        length = ops.reduce_max(numbered, _int64([0]), True)  # [1]
        hidden = ops.slice(hidden, _int64([0]), length, _int64([1]), _int64([1]))
        inner_mask = ops.slice(inner_mask, _int64([0]), length, _int64([1]), _int64([1]))
        next_segment = self.segments[layer].clone()
        for parameter, source in zip(next_segment.get_parameters(), (hidden.output(0), inner_mask.output(0))):
            for consumer in list(parameter.output(0).get_target_inputs()):
                consumer.replace_source_output(source)
        sub_logits, sub_layers = self.from_layer(layer + 1, _results_by_name(next_segment), inner_mask.output(0), inner_threshold)
        out_logits = ops.scatter_update(inner_logits, staying, sub_logits, _int64(0))
        out_layers = ops.scatter_update(inner_layer, staying, sub_layers, _int64(0))
        go_on.finish(out_logits.output(0), out_layers.output(0))

        return _if(all_leave.output(0), exit_branch, go_on)


def main():
    from .early_exit_side_by_side import interleaved_ms, load_side_by_side, side_by_side_arguments

    from optimum_dynexec.early_exit.export import segment_names

    args = side_by_side_arguments(__doc__, rows=1024, repeats=5).parse_args()
    tokenizer, plain, early, texts, ov_config = load_side_by_side(args)
    early.compile()
    cfg = early.early_exit_config
    graph = build_batch_graph([early.exit_segments[n] for n in segment_names(cfg.num_layers)],
                              cfg.exit_temperatures, cfg.num_labels)
    request = openvino.Core().compile_model(graph, "CPU", ov_config).create_infer_request()
    threshold = early.entropy_threshold
    batches = [dict(tokenizer(texts[i:i + args.batch], padding=True, return_tensors="np"))
               for i in range(0, len(texts), args.batch)]

    def graph_call(batch):
        inputs = {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in batch.items()}
        inputs[THRESHOLD_INPUT] = np.array(threshold, dtype=np.float32)
        result = request.infer(inputs)
        return result[0], result[1]

    same_exit = same_pred = total = flagged = 0
    for batch in batches:
        out = early(**batch, output_exit_layers=True)
        logits, layers = graph_call(batch)
        flagged += int((layers < 0).sum())
        same_exit += int((np.abs(layers) == out.exit_layers).sum())
        same_pred += int((logits.argmax(-1) == out.logits.argmax(-1)).sum())
        total += len(layers)
    print(f"graph vs segments: same exit {same_exit}/{total}, same prediction {same_pred}/{total}, flagged {flagged}")

    calls = {"plain": lambda b: plain(**b), "segments": lambda b: early(**b), "graph": graph_call}
    ms = interleaved_ms(calls, batches, args.repeats, warm_up=10)  # per batch
    for n, v in ms.items():
        print(f"  {n:<10} {v:7.3f} ms per batch  speed-up {ms['plain'] / v:.2f}x")


if __name__ == "__main__":
    main()
