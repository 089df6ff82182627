"""Reproduce, with OpenVINO alone, the CPU plugin crash that `optimum_dynexec.openvino_cpu` steers around.

OpenVINO 2026.4.1 on a CPU with AMX (Sapphire Rapids class) dies with SIGFPE ("Floating point exception") when it
compiles a stateful decoder graph at bf16 with INFERENCE_NUM_THREADS=1. This script builds small graphs with the
opset API (no model files, no optimum), compiles and runs each in its own subprocess under several property sets,
and prints a table of which ones kill the process. Run it as is, or with `--ir path/openvino_model.xml` to add an
exported model (e.g. one written by `optimum-cli export openvino`).

    python repro/openvino_cpu_sigfpe.py [--hidden 64 128 576] [--ir ...]
"""

import argparse
import json
import platform
import signal
import subprocess
import sys

PROPERTY_SETS = {
    "bf16, 1 thread": {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": "1"},
    "default precision, 1 thread": {"INFERENCE_NUM_THREADS": "1"},
    "bf16, 2 threads": {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": "2"},
    "f32, 1 thread": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"},
}
GRAPHS = ("stateful KV cache + SDPA", "stateful KV cache + MatMul", "SDPA", "MatMul")


def build(graph: str, hidden: int):
    """One of `GRAPHS`, with `hidden` = heads x 64 (as a decoder layer's attention of that width)."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.op.util import Variable, VariableInfo

    heads, head_size = max(1, hidden // 64), min(hidden, 64)
    shape = ov.PartialShape([-1, heads, -1, head_size])
    query, key, value = (ops.parameter(shape, ov.Type.f32, name=name) for name in ("query", "key", "value"))
    parameters = [query, key, value]
    sinks = []
    if graph.startswith("stateful"):
        beam_idx = ops.parameter(ov.PartialShape([-1]), ov.Type.i32, name="beam_idx")
        parameters.append(beam_idx)
        cached = []
        for name, new in (("past_key", key), ("past_value", value)):
            info = VariableInfo()
            info.data_shape, info.data_type, info.variable_id = shape, ov.Type.f32, name
            variable = Variable(info)
            zeros = ops.broadcast(ops.constant(np.float32(0)), ops.concat([
                ops.gather(ops.shape_of(new), ops.constant([0]), ops.constant(0)),
                ops.constant(np.array([heads, 0, head_size], dtype=np.int64))], 0))
            past = ops.gather(ops.read_value(zeros, variable), beam_idx, ops.constant(0))
            total = ops.concat([past, new], axis=2)
            sinks.append(ops.assign(total, variable))
            cached.append(total)
        key, value = cached
    if graph.endswith("SDPA"):  # with a mask and a scale input, as optimum-intel's decoder graphs call it
        mask = ops.parameter(ov.PartialShape([-1, 1, -1, -1]), ov.Type.f32, name="attention_mask")
        parameters.append(mask)
        scale = ops.constant(np.float32(head_size ** -0.5))
        output = ops.scaled_dot_product_attention(query, key, value, mask, scale, causal=False)
    else:
        scores = ops.softmax(ops.matmul(query, key, False, True), -1)
        output = ops.matmul(scores, value, False, False)
    weights = ops.constant(np.random.default_rng(0).standard_normal((head_size, head_size)).astype(np.float32))
    output = ops.matmul(output, weights, False, False)
    return ov.Model([ops.result(output)], sinks, parameters, graph)


def run_one(graph: str, hidden: int, properties: dict, ir: str = None) -> None:
    """Compile and infer once (in this process, which may die)."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(ir) if ir else build(graph, hidden)
    compiled = core.compile_model(model, "CPU", properties)
    if ir:
        return
    request = compiled.create_infer_request()
    heads, head_size = max(1, hidden // 64), min(hidden, 64)
    inputs = {name: np.random.default_rng(1).standard_normal((1, heads, 5, head_size)).astype(np.float32)
              for name in ("query", "key", "value")}
    if graph.startswith("stateful"):
        inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
    for step in range(1, 3):
        if graph.endswith("SDPA"):
            inputs["attention_mask"] = np.zeros((1, 1, 5, 5 * step if graph.startswith("stateful") else 5), np.float32)
        request.infer(inputs)


def outcome(returncode: int) -> str:
    if returncode == 0:
        return "ok"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"error (exit {returncode})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 576])
    parser.add_argument("--ir", nargs="*", default=[], help="OpenVINO IR .xml files to compile as well.")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        run_one(job["graph"], job["hidden"], job["properties"], job.get("ir"))
        return

    import openvino as ov

    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    print(f"OpenVINO {ov.get_version()}, {platform.processor() or platform.machine()}, "
          f"AMX flags: {sorted(flag for flag in flags if flag.startswith('amx')) or 'none'}, "
          f"CPU default precision: {ov.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT').get_type_name()}")
    jobs = [(graph, hidden, None) for graph in GRAPHS for hidden in args.hidden] + [("IR", 0, ir) for ir in args.ir]
    print(f"| graph | hidden | {' | '.join(PROPERTY_SETS)} |")
    print("|---|---|" + "---|" * len(PROPERTY_SETS))
    for graph, hidden, ir in jobs:
        cells = []
        for properties in PROPERTY_SETS.values():
            job = json.dumps({"graph": graph, "hidden": hidden, "properties": properties, "ir": ir})
            result = subprocess.run([sys.executable, __file__, "--one", job], capture_output=True, text=True)
            cells.append(outcome(result.returncode))
        print(f"| {ir or graph} | {hidden or '-'} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
