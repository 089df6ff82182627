"""What a bigger fixture target would buy EAGLE and draft speculation: per-call costs measured, speed-ups projected.

    python -m lab.experiments.speculation_cost_model [--shapes 384x8,512x12,640x12] [--output results/cost-model.json]

Speed-ups on this CPU are bounded by how much a verification costs against the calls that prepare it (head or draft
calls, and Python). This script measures those per-call costs for Llama targets of several shapes (vocabulary,
attention layout and context as in the benchmark fixture) and an EAGLE head of each target's width, and combines them
with the acceptance measured on the real fixture pair (`--tokens-per-cycle`, `--draft-tokens-per-cycle`, from
docs/benchmarks.md) into a projected decode-phase speed-up over plain optimum-intel `generate()`.

**Costs only.** The bigger targets and all heads here have random weights: they time a call exactly as trained weights
would (same graph, same shapes), but they say nothing about acceptance, which is taken from the trained 14M fixture.
No speed-up printed here is a measurement; the first row (the fixture's own shape) checks the projection against the
measured speed-up of the real pair.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="384x8,512x12,640x12",
                        help="Target shapes `hidden x layers` (6 heads per 384, 2 KV heads, MLP 8/3 x hidden).")
    parser.add_argument("--context", type=int, default=300, help="Tokens of context before the timed calls.")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--depth", type=int, default=6, help="EAGLE chain depth (head calls per cycle).")
    parser.add_argument("--tokens-per-cycle", type=float, default=5.19,
                        help="EAGLE tokens per verification measured on the fixture (chain of 6, self-distilled head).")
    parser.add_argument("--draft-tokens", type=int, default=5, help="Draft length (a constant schedule).")
    parser.add_argument("--draft-tokens-per-cycle", type=float, default=3.87,
                        help="Draft-model tokens per verification measured on the fixture (its self-distilled draft, "
                             "a constant 5 drafts: lab/experiments/draft_settings.py, session 6).")
    parser.add_argument("--python-ms-per-cycle", type=float, default=1.9,
                        help="Loop time outside the calls per EAGLE cycle (lab/experiments/speculation_call_profile.py).")
    parser.add_argument("--output", default="speculation_cost_model.json")
    args = parser.parse_args()
    torch.set_num_threads(2)

    import openvino as ov
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lab.fixtures.causal_lm import build_causal_lm_fixture
    from optimum_dynexec.speculative.eagle import EagleHead, eagle_config_from_target, export_eagle_head
    from optimum_dynexec.speculative.eagle import target_with_features
    from optimum_dynexec.weight_compression import compress_weights
    from optimum_dynexec.speculative.kv_cache import DecoderSession, TreeDecoderSession
    from optimum_dynexec.speculative.kv_cache import sequence_inputs as _rows
    from optimum_dynexec.speculative.modeling import (EAGLE_HEAD_DEFAULT_COMPRESSION, drafter_ov_config,
                                                      target_ov_config)

    fixture = build_causal_lm_fixture("benchmark")
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    base = LlamaConfig.from_pretrained(fixture.target_dir)
    ov_config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "2", "NUM_STREAMS": "1"}
    core = ov.Core()
    rng = np.random.default_rng(0)

    def median_ms(timed_call, calls=args.calls):
        """Median of what `timed_call()` returns (seconds of the part it times), in ms."""
        return float(np.median([timed_call() for _ in range(calls)][5:])) * 1e3

    def timed(function):
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    draft = OVModelForCausalLM.from_pretrained(fixture.draft_dir, export=True, ov_config=drafter_ov_config(ov_config))
    draft_session = DecoderSession.for_model(draft)
    draft_session.append(rng.integers(10, 4000, args.context))

    def draft_step():
        seconds = timed(lambda: draft_session.append(rng.integers(10, 4000, 1)))
        draft_session.rollback(args.context)
        return seconds

    draft_ms = median_ms(draft_step)
    rows = []
    for shape in args.shapes.split(","):
        hidden, layers = (int(value) for value in shape.split("x"))
        config = LlamaConfig(**{**base.to_dict(), "hidden_size": hidden, "num_hidden_layers": layers,
                                "num_attention_heads": hidden // 64, "num_key_value_heads": 2,
                                "intermediate_size": int(round(hidden * 8 / 3 / 64)) * 64})
        with tempfile.TemporaryDirectory() as folder:
            torch.manual_seed(0)
            target = LlamaForCausalLM(config).eval()
            parameters = sum(p.numel() for p in target.parameters())
            target.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            plain = OVModelForCausalLM.from_pretrained(folder, export=True,
                                                       ov_config=target_ov_config(ov_config))
            head = EagleHead(eagle_config_from_target(config)).attach_target(target)
            head_model = compress_weights(export_eagle_head(head), EAGLE_HEAD_DEFAULT_COMPRESSION)
            tree_target = core.compile_model(target_with_features(plain.model), "CPU",
                                             target_ov_config(ov_config))
            head_compiled = core.compile_model(head_model, "CPU", ov_config)

            prompt = torch.from_numpy(rng.integers(10, 4000, (1, args.context)))
            plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, do_sample=False)
            generate_ms = []
            for _ in range(3):
                started = time.perf_counter()
                plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1, do_sample=False)
                prefill = time.perf_counter() - started
                started = time.perf_counter()
                plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=65, min_new_tokens=65,
                               do_sample=False)
                generate_ms.append((time.perf_counter() - started - prefill) / 64 * 1e3)
            plain_ms = float(np.median(generate_ms))

            verifier = TreeDecoderSession(tree_target.create_infer_request())
            drafter = TreeDecoderSession(head_compiled.create_infer_request())

            def fresh_context(session, **extra):
                # Rolled-back rows stay in a stateful cache, masked; start again before they pile up.
                if session.length == 0 or session.masked_slots > 40:
                    session.reset()
                    session.run(_rows(input_ids=prompt[0].numpy(), position_ids=np.arange(args.context), **{
                        name: value(args.context) for name, value in extra.items()}))
                session.rollback(args.context)

            def verify(count):
                def call():
                    fresh_context(verifier)
                    return timed(lambda: verifier.run(_rows(input_ids=rng.integers(10, 4000, count),
                                                            position_ids=np.arange(args.context,
                                                                                   args.context + count))))
                return call

            def head_call():
                fresh_context(drafter, features=lambda rows: rng.standard_normal((rows, hidden)))
                return timed(lambda: drafter.run(_rows(input_ids=rng.integers(10, 4000, 1),
                                                       features=rng.standard_normal((1, hidden)),
                                                       position_ids=np.array([args.context]))))

            verify_eagle_ms = median_ms(verify(args.depth + 1))
            verify_draft_ms = median_ms(verify(args.draft_tokens + 1))
            head_ms = median_ms(head_call)
        eagle_cycle = verify_eagle_ms + args.depth * head_ms + args.python_ms_per_cycle
        draft_cycle = verify_draft_ms + args.draft_tokens * draft_ms
        rows.append({
            "target": f"{hidden} x {layers}", "parameters_millions": round(parameters / 1e6, 1),
            "plain_generate_ms_per_token": round(plain_ms, 2),
            f"verify_{args.depth + 1}_rows_ms": round(verify_eagle_ms, 2), "head_call_ms": round(head_ms, 2),
            f"verify_{args.draft_tokens + 1}_rows_ms": round(verify_draft_ms, 2), "draft_call_ms": round(draft_ms, 2),
            "projected_eagle_decode_speedup": round(plain_ms / (eagle_cycle / args.tokens_per_cycle), 2),
            "projected_draft_decode_speedup": round(plain_ms / (draft_cycle / args.draft_tokens_per_cycle), 2),
        })
        print(rows[-1], flush=True)

    print("| target | parameters | plain generate() ms/token | verify (EAGLE) ms | head call ms | verify (draft) ms "
          "| draft call ms | projected EAGLE decode speed-up | projected draft decode speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        values = list(row.values())
        print("| " + " | ".join(str(value) for value in values) + " |")
    Path(args.output).write_text(json.dumps({"arguments": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
