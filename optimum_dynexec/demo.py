"""The main job on the embedded default: `make demo` / `python -m optimum_dynexec.demo`.

Builds (first run) or loads (later runs) the quick causal-LM fixture pair trained on the Python standard
library, exports it to OpenVINO, completes held-out code with speculative generation, checks the output equals
plain decoding, and prints the speed-up measured against plain `OVModelForCausalLM.generate()` in the same run.
"""

import argparse
import time
from pathlib import Path


def speculative_demo(size: str = "quick", prompts_per_task: int = 4, max_new_tokens: int = 96, repeats: int = 3):
    from transformers import AutoTokenizer

    from optimum_dynexec import OVSpeculativeModelForCausalLM
    from optimum_dynexec.benchmark.generation import format_table, run_fixture_benchmark
    from optimum_dynexec.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts

    print(f"== Speculative generation on the {size!r} fixture (target + draft trained on the standard library)")
    fixture = build_causal_lm_fixture(size)
    quality = fixture.quality
    print(f"fixture quality: {quality}")

    results, _, output = run_fixture_benchmark(
        size, prompts_per_task, max_new_tokens, repeats, tasks=("completion", "editing"),
        output=Path("results") / f"demo-generation-{size}.json",
    )
    model_dir = Path(fixture.path) / "openvino-fp32"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = OVSpeculativeModelForCausalLM.from_pretrained(model_dir)
    prompt = evaluation_prompts(fixture, "completion", 1, seed=7)[0]
    inputs = tokenizer(prompt, return_tensors="pt")
    start = time.perf_counter()
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    seconds = time.perf_counter() - start
    stats = model.last_decoding_stats
    print("\n-- held-out prompt (tail) --------------------------------------------")
    print(prompt[-400:])
    print("-- speculative completion --------------------------------------------")
    print(tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:]))
    print("----------------------------------------------------------------------")
    print(f"{stats.new_tokens} tokens in {seconds:.2f} s with {stats.target_calls} target calls "
          f"({stats.mean_accepted_length:.2f} tokens per verification)\n")
    print(format_table(results))
    for result in results:
        if result.mode in ("draft", "prompt_lookup"):
            print(f"{result.task:>10} / {result.mode:<13}: {result.speedup:.2f}x plain optimum-intel generate(), "
                  f"greedy output identical on {result.identical_to_plain} prompts")
    print(f"results written to {output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="quick", choices=["quick", "benchmark"])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    speculative_demo(args.size, max_new_tokens=args.max_new_tokens, repeats=args.repeats)


if __name__ == "__main__":
    main()
