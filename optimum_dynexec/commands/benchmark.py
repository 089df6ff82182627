"""`optimum-cli dynexec benchmark`: time any causal LM against plain optimum-intel at its defaults, side by side with
openvino-genai and our speculative modes; print a table, write JSON.

Argument setup imports nothing heavy (optimum-cli builds every subcommand's parser at each start-up); the checks in
`check_arguments` run before any model is loaded, so a wrong path or value ends in one line.
"""

import argparse
import json
from pathlib import Path

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo

from ..extras import install_hint, missing_extra

# Kept in step with optimum_dynexec.benchmark.generation (which imports numpy, too heavy for argument setup).
REAL_MODEL = "real"
MODES = ("plain", "genai_plain", "genai_prompt_lookup", "genai_draft", "prompt_lookup", "draft", "eagle")
BUILTIN_KINDS = ("chat", "grounded", "random")
FIXTURE_KINDS = ("completion", "editing", "random")
DEFAULT_PROMPTS_PER_KIND = 8


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def ov_config_json(value: str) -> dict:
    try:
        config = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {value!r}") from None
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise argparse.ArgumentTypeError(f"must be a JSON object of OpenVINO properties, got {value!r}")
    if not all(isinstance(item, (str, int, float, bool)) for item in config.values()):
        raise argparse.ArgumentTypeError(f"property values must be strings, numbers or booleans, got {value!r}")
    return config


def _looks_like_gguf(path: Path) -> bool:
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False


def check_arguments(args) -> None:
    """Refuse wrong combinations, paths and prompt files (ValueError) before anything heavy is imported."""
    if args.fixture is not None:
        if args.model != REAL_MODEL or args.draft_model is not None or args.prompts is not None:
            raise ValueError("--fixture measures the toy fixture pair with its own prompts: drop --model, "
                             "--draft-model and --prompts.")
        unknown = sorted(set(args.kinds or ()) - set(FIXTURE_KINDS))
        if unknown:
            raise ValueError(f"--kinds {' '.join(unknown)}: the fixture's kinds are {', '.join(FIXTURE_KINDS)}.")
        return
    for option, value in (("--model", args.model), ("--draft-model", args.draft_model)):
        if value is None or (option == "--model" and value == REAL_MODEL):
            continue
        path = Path(value).expanduser()
        if not path.exists():
            raise ValueError(f"{option} {value!r} does not exist ({path.absolute()}): pass an OpenVINO folder, a "
                             "transformers checkpoint folder or a .gguf file.")
        if path.is_file() and not _looks_like_gguf(path):
            raise ValueError(f"{option} {value!r} is a file but not a GGUF model.")
        if path.is_dir() and not ((path / "openvino_model.xml").is_file() or (path / "config.json").is_file()):
            raise ValueError(f"{option} {value!r} holds neither openvino_model.xml nor config.json.")
    if args.prompts is not None:
        from optimum_dynexec.benchmark.prompt_sets import read_prompts_file

        read_prompts_file(args.prompts, args.kinds, args.prompts_per_kind)  # fails here, with the file's name
    else:
        unknown = sorted(set(args.kinds or ()) - set(BUILTIN_KINDS))
        if unknown:
            raise ValueError(f"--kinds {' '.join(unknown)}: the built-in kinds are {', '.join(BUILTIN_KINDS)} "
                             "(pass --prompts for your own).")


class BenchmarkCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(
        name="benchmark",
        help="Time a causal LM (OpenVINO folder, checkpoint or .gguf) against plain optimum-intel at its defaults, "
        "side by side with openvino-genai and speculative generation.",
    )

    @staticmethod
    def parse_args(parser):
        parser.add_argument(
            "-m", "--model", default=REAL_MODEL,
            help="OpenVINO folder, transformers checkpoint folder or .gguf file (the last two are exported once by "
            "optimum-intel at its defaults and cached); 'real' is SmolLM2-135M-Instruct, built and cached on first "
            "use. Default: %(default)s.",
        )
        parser.add_argument(
            "--draft-model", default=None,
            help="Draft model in the same forms, for the draft and genai_draft modes. Default: %(default)s (the "
            "model folder's draft/ sub-folder when it has one).",
        )
        parser.add_argument(
            "--prompts", type=Path, default=None,
            help="Your own prompts instead of the built-in sets: one per line (kind 'custom'), or JSON lines "
            '{"prompt": ..., "kind": ...}. Default: %(default)s (the built-in sets).',
        )
        parser.add_argument(
            "--kinds", "--tasks", nargs="+", default=None, metavar="KIND",
            help=f"Prompt kinds to run: built-in {', '.join(BUILTIN_KINDS)}; with --prompts, kinds of that file; "
            f"with --fixture, {', '.join(FIXTURE_KINDS)}. Default: %(default)s (all of them).",
        )
        parser.add_argument(
            "--prompts-per-kind", "--prompts-per-task", type=positive_int, default=None, metavar="N",
            help=f"Prompts per kind. Default: %(default)s ({DEFAULT_PROMPTS_PER_KIND} built-in, every prompt of a "
            "--prompts file).",
        )
        parser.add_argument("--split", default="test", choices=["dev", "test"],
                            help="Half of the built-in prompt sets: dev for tuning, test for reports. "
                            "Default: %(default)s.")
        parser.add_argument("--seed", type=int, default=0, help="Draws the built-in prompts. Default: %(default)s.")
        parser.add_argument("--max-new-tokens", type=positive_int, default=128, metavar="N",
                            help="Exactly this many new tokens per generation, every mode. Default: %(default)s.")
        parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                            help="Timed repeats; tokens/s at the median. Default: %(default)s.")
        parser.add_argument("--modes", nargs="+", default=None, choices=MODES, metavar="MODE",
                            help=f"Modes to run among {', '.join(MODES)} (plain always runs: it is the baseline). "
                            "Default: %(default)s (every mode that applies).")
        parser.add_argument("--prompt-lookup-tokens", type=positive_int, default=5, metavar="N",
                            help="Our prompt_lookup_num_tokens. Default: %(default)s.")
        parser.add_argument(
            "--ov-config", type=ov_config_json, default=None, metavar="JSON",
            help='OpenVINO properties for every side alike, e.g. \'{"INFERENCE_PRECISION_HINT": "f32"}\'. '
            "Default: %(default)s (every side at its defaults: the baseline rule).",
        )
        parser.add_argument(
            "--fixture", default=None, choices=["quick", "benchmark"],
            help="Measure the project's toy fixture pair (trained here on the standard library) instead of --model. "
            "Default: %(default)s.",
        )
        parser.add_argument("--output", type=Path, default=None,
                            help="JSON file. Default: %(default)s (results/benchmark-<model name>.json, "
                            "results/generation-<fixture>.json with --fixture).")

    def run(self):
        args = self.args
        try:
            check_arguments(args)
        except ValueError as error:
            self.parser.error(str(error))
        # openvino-genai only adds comparison rows, so its absence is a note rather than an error.
        if missing_extra("genai") is not None:
            print(f"openvino-genai is not installed, its rows are skipped ({install_hint('genai')}).")
        from optimum_dynexec.benchmark.generation import benchmark_model, format_table, run_fixture_benchmark

        if args.fixture is not None:
            results, context, output = run_fixture_benchmark(
                args.fixture, args.prompts_per_kind or DEFAULT_PROMPTS_PER_KIND, args.max_new_tokens, args.repeats,
                tuple(args.kinds or FIXTURE_KINDS), args.ov_config, args.output, modes=args.modes,
            )
            print(format_table(results))
            print(f"fixture quality: {context['fixture']['quality']}")
        else:
            try:
                results, output = benchmark_model(
                    args.model, args.draft_model, prompts=args.prompts, max_new_tokens=args.max_new_tokens,
                    repeats=args.repeats, kinds=args.kinds, prompts_per_kind=args.prompts_per_kind, split=args.split,
                    seed=args.seed, ov_config=args.ov_config, modes=args.modes,
                    prompt_lookup_tokens=args.prompt_lookup_tokens, output=args.output,
                )
            except ValueError as error:  # a model or prompt set this benchmark cannot use: one line, no traceback
                self.parser.error(str(error))
            print(format_table(results))
        precision = "every side at its defaults" if not args.ov_config else f"ov_config {args.ov_config} on every side"
        print(f"baseline: plain optimum-intel OVModelForCausalLM ({precision}); greedy, {args.max_new_tokens} new "
              f"tokens per prompt, median of {args.repeats} repeat(s)")
        print(f"results written to {output}")
