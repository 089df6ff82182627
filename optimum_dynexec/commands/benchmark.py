"""`optimum-cli dynexec benchmark`: time plain vs dynamic execution on the same OpenVINO model, print and save."""

from pathlib import Path

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo

from ..extras import install_hint, missing_extra


class BenchmarkCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(name="benchmark", help="Time plain vs dynamic execution on the same OpenVINO model.")

    @staticmethod
    def parse_args(parser):
        parser.add_argument(
            "--fixture", default="benchmark", choices=["quick", "benchmark"],
            help="Which trained causal-LM fixture pair to measure (built and cached on first use).",
        )
        parser.add_argument("--tasks", nargs="+", default=["completion", "editing", "random"],
                            choices=["completion", "editing", "random"])
        parser.add_argument("--prompts-per-task", type=int, default=8)
        parser.add_argument("--max-new-tokens", type=int, default=128)
        parser.add_argument("--repeats", type=int, default=3, help="Timed repeats; the median is reported.")
        parser.add_argument(
            "--precision", default="f32", choices=["f32", "default"],
            help="f32 (exact greedy speculation, the default of OVSpeculativeModelForCausalLM) or the device "
            "default (bf16 on CPUs that have it), for every mode alike.",
        )
        parser.add_argument("--output", type=Path, default=None, help="JSON file (default results/generation-*.json)")

    def run(self):
        from optimum_dynexec.benchmark.generation import format_table, run_fixture_benchmark

        args = self.args
        for name in ("prompts_per_task", "max_new_tokens", "repeats"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
        # openvino-genai only adds comparison rows, so its absence is a note rather than an error.
        if missing_extra("genai") is not None:
            print(f"openvino-genai is not installed, its rows are skipped ({install_hint('genai')}).")
        ov_config = None if args.precision == "f32" else {}
        results, context, output = run_fixture_benchmark(
            args.fixture, args.prompts_per_task, args.max_new_tokens, args.repeats, args.tasks, ov_config, args.output
        )
        quality = context["fixture"]["quality"]
        print(format_table(results))
        print(f"fixture quality: {quality}")
        print(f"results written to {output}")
