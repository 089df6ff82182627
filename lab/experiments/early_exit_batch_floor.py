"""How fast could early exit run a batch of 32 on this OpenVINO build at best? (lab script, not installed)

    python -m lab.experiments.early_exit_batch_floor --model <exported early-exit folder> --data <folder with test.csv> \
        [--rows 512] [--batch 32] [--repeats 5] [--ov-config '{"INFERENCE_NUM_THREADS": "1"}']

Records the shape of every segment call the early-exit model makes on the test batches at its saved threshold
(rows alive x columns kept), then times, interleaved over repeats, medians:
- plain optimum-intel on the batches (what the user runs; dynamic shapes);
- the early-exit model's `forward`;
- the same segment calls replayed with nothing between them: each call on a segment compiled for exactly its shape,
  inputs bound beforehand (no Python, no compaction, no shape change) -- the floor of the segment-by-segment design;
- the same calls with the real tokens of the alive rows packed into one row (no padding), static shapes: an estimate of
  the floor of a runtime that packs tokens;
- plain compiled for each batch's exact shape, the same treatment for the baseline.
The ideal is plain / layer speed-up. Where the floor is far from the ideal, no runtime change in Python reaches it:
the cost is in the small calls themselves.
"""

import statistics
import time


def main():
    from .early_exit_side_by_side import load_side_by_side, side_by_side_arguments

    args = side_by_side_arguments(__doc__, rows=512, repeats=5).parse_args()

    import numpy as np
    import openvino
    from tqdm.auto import tqdm

    from optimum_dynexec.early_exit.export import segment_names

    tokenizer, plain, early, texts, ov_config = load_side_by_side(args)
    batches = [dict(tokenizer(texts[start : start + args.batch], padding=True, return_tensors="np"))
               for start in range(0, len(texts), args.batch)]

    # The calls the model makes: wrap each segment request's infer to log (layer, input shapes).
    early.compile()
    calls = []
    exits = []
    for layer, request in enumerate(early._segment_requests, start=1):
        original = request.infer

        def logged(*a, _layer=layer, _request=request, _original=original, **k):
            shapes = [tuple(_request.get_input_tensor(i).shape) for i in range(len(_request.model_inputs))]
            calls[-1].append((_layer, shapes))
            return _original(*a, **k)

        request.infer = logged
    for batch in batches:
        calls.append([])
        exits.append(early(**batch, output_exit_layers=True).exit_layers)
    early.clear_requests()
    # The real tokens (attention-mask ones) of the rows alive at each call: what a runtime that packs the tokens of a
    # batch into one row would compute (an estimate: one row of T tokens attends over all T, slightly more work).
    packed_calls = []
    for batch, batch_exits in zip(batches, exits):
        lengths = batch["attention_mask"].sum(axis=1)
        packed_calls.append([int(lengths[np.asarray(batch_exits) >= layer].sum())
                             for layer in range(1, early.num_layers + 1) if (np.asarray(batch_exits) >= layer).any()])
    exits = np.concatenate(exits)
    layer_speedup = early.num_layers / exits.mean()

    core = openvino.Core()
    segments = [early.exit_segments[name] for name in segment_names(early.num_layers)]
    compiled = {}
    rng = np.random.default_rng(0)

    def static_request(model, key, shapes):
        if key not in compiled:
            graph = model.clone()
            graph.reshape({port.any_name: openvino.PartialShape(list(shape)) for port, shape in zip(graph.inputs, shapes)})
            request = core.compile_model(graph, "CPU", ov_config).create_infer_request()
            for index, port in enumerate(request.model_inputs):
                shape = tuple(port.get_shape())
                if port.get_element_type() == openvino.Type.f32:
                    values = rng.standard_normal(shape).astype(np.float32)
                elif "attention_mask" in port.any_name:
                    values = np.ones(shape, dtype=np.int64)
                else:
                    values = rng.integers(1000, 2000, shape).astype(np.int64) if "input_ids" in port.any_name \
                        else np.zeros(shape, dtype=np.int64)
                request.set_input_tensor(index, openvino.Tensor(values))
            compiled[key] = request
        return compiled[key]

    replay = [[static_request(segments[layer - 1], (layer, tuple(shapes)), shapes) for layer, shapes in batch_calls]
              for batch_calls in tqdm(calls, desc="compiling the replayed shapes")]
    def packed_shapes(layer, tokens):
        if layer == 1:
            return [(1, tokens)] * len(segments[0].inputs)
        return [(1, tokens, early.config.hidden_size), (1, tokens)]

    packed = [[static_request(segments[layer - 1], ("packed", layer, tokens), packed_shapes(layer, tokens))
               for layer, tokens in enumerate(batch_tokens, start=1)]
              for batch_tokens in tqdm(packed_calls, desc="compiling the packed shapes")]
    plain_model = plain.model
    plain_static = [static_request(plain_model, ("plain", tuple(b["input_ids"].shape)),
                                   [b[port.any_name].shape for port in plain_model.inputs]) for b in batches]

    def run_replay():
        for batch_requests in replay:
            for request in batch_requests:
                request.infer()

    def run_packed():
        for batch_requests in packed:
            for request in batch_requests:
                request.infer()

    def run_plain_static():
        for request in plain_static:
            request.infer()

    timed = {
        "plain optimum-intel": lambda: [plain(**batch) for batch in batches],
        "early exit forward": lambda: [early(**batch) for batch in batches],
        "floor: replay, static shapes": run_replay,
        "floor if tokens were packed": run_packed,
        "plain, static shapes": run_plain_static,
    }
    for call in timed.values():
        call()
    seconds = {name: [] for name in timed}
    for _ in tqdm(range(args.repeats), desc="timing", unit="repeat"):
        for name, call in timed.items():
            started = time.perf_counter()
            call()
            seconds[name].append((time.perf_counter() - started) / len(batches) * 1e3)
    ms = {name: statistics.median(values) for name, values in seconds.items()}
    alive = [sum(shapes[0][0] for _, shapes in batch_calls) for batch_calls in calls]
    print(f"{len(texts)} rows in batches of {args.batch}, ov_config {ov_config}; mean exit layer {exits.mean():.2f}, "
          f"layer speed-up {layer_speedup:.2f}x; segment calls per batch {np.mean([len(c) for c in calls]):.1f}, "
          f"rows per batch summed over calls {np.mean(alive):.1f}")
    ideal = ms["plain optimum-intel"] / layer_speedup
    for name, value in ms.items():
        print(f"  {name:<30} {value:7.3f} ms per batch   speed-up over plain {ms['plain optimum-intel'] / value:5.2f}x"
              f"   share of the ideal {ideal / value:5.0%}")
    print(f"  ideal (plain / {layer_speedup:.2f})            {ideal:7.3f} ms per batch")


if __name__ == "__main__":
    main()
