"""`optimum-cli dynexec benchmark`: time any causal LM against plain optimum-intel at its defaults, side by side with
openvino-genai and our speculative modes (`--task text-generation`, the default), or an early-exit classifier against
plain optimum-intel `OVModelForSequenceClassification` on your labelled data (`--task text-classification`); print a
table, write JSON (and, for classification, the accuracy/speed plot next to it).

Argument setup imports nothing heavy (optimum-cli builds every subcommand's parser at each start-up); the checks in
`check_arguments` run before any model is loaded, so a wrong path or value ends in one line.
"""

import argparse
import json
from pathlib import Path

from optimum.commands.base import CommandInfo

from .base import PluginCommand
from ..extras import install_hint, missing_extra

CLASSIFICATION = "text-classification"
DEFAULT_BATCH_SIZES = (1, 32)
CLASSIFICATION_REPEATS = 5
DEFAULT_TIMING_EXAMPLES = 1024
CLASSIFICATION_SPLIT = "test"
# Kept in step with lab.benchmark.generation (which imports numpy, too heavy for argument setup; a test checks).
REAL_MODEL = "real"
REAL_MODEL_EAGLE3 = "real-eagle3"
MODES = ("plain", "genai_plain", "genai_prompt_lookup", "genai_draft", "genai_eagle", "prompt_lookup", "draft",
         "eagle")
BUILTIN_KINDS = ("chat", "grounded", "random")
FIXTURE_KINDS = ("completion", "editing", "random")
DEFAULT_PROMPTS_PER_KIND = 8
GENERATION = "text-generation"
TASKS = (GENERATION, CLASSIFICATION)
# The options both tasks share whose default differs by task: None in the parser, filled in by `check_task_options`.
TASK_DEFAULTS = {GENERATION: {"split": "test", "repeats": 3}, CLASSIFICATION: {"repeats": CLASSIFICATION_REPEATS}}
GENERATION_ONLY = ("draft_model", "prompts", "kinds", "prompts_per_kind", "seed", "max_new_tokens", "modes",
                   "prompt_lookup_tokens", "fixture")
CLASSIFICATION_ONLY = ("dataset", "text_column", "label_column", "target_accuracy", "confidence", "threshold",
                       "batch_sizes", "timing_examples", "max_length")


def lab_module(name: str):
    """`lab.<name>` from the checkout this package is installed from: the benchmark harnesses and their data (prompt
    sets, text sets, the real-model fixture) are the project's lab, which is not part of the installed library.
    SystemExit saying what to do when there is no checkout."""
    import importlib
    import sys

    root = Path(__file__).resolve().parents[2]
    if (root / "lab" / "__init__.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"lab.{name}")
    except ModuleNotFoundError as error:
        if error.name not in ("lab", f"lab.{name}"):
            raise
        raise SystemExit(
            "`optimum-cli dynexec benchmark` runs the harnesses in the repository's lab/ folder, which is not "
            "installed: run it from a checkout installed with `pip install -e .` (`make benchmark`)."
        ) from None


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


def unit_interval(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {number}")
    return number


def _looks_like_gguf(path: Path) -> bool:
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False


class _StoreGiven(argparse.Action):
    """argparse's plain `store`, also noting on the namespace (`given_options`) that the option was given: an option
    of the other task is then refused even when the value passed equals its default."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given_options = set(getattr(namespace, "given_options", ())) | {self.dest}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_task_options(args) -> None:
    """Refuse the options of the other task (ValueError), then fill in this task's defaults of shared options."""
    given = getattr(args, "given_options", set())
    other_only = CLASSIFICATION_ONLY if args.task == GENERATION else GENERATION_ONLY
    wrong = [_option(name) for name in other_only if name in given]
    if wrong:
        other = CLASSIFICATION if args.task == GENERATION else GENERATION
        raise ValueError(f"{' '.join(wrong)} only appl{'ies' if len(wrong) == 1 else 'y'} to --task {other}; drop "
                         f"{'it' if len(wrong) == 1 else 'them'} or pass --task {other}.")
    for name, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def check_classification_arguments(args) -> None:
    """--task text-classification: an early-exit folder and a dataset are needed; ValueError before any model loads."""
    from ..early_exit.config import early_exit_folder_kind

    given = getattr(args, "given_options", set())
    missing = [_option(name) for name in ("model", "dataset") if name not in given]
    if missing:
        raise ValueError(f"--task {CLASSIFICATION} needs {' and '.join(missing)}: --model <folder written by "
                         "`optimum-cli export dynexec --task text-classification` or `train-exits`> --dataset "
                         "<CSV/JSON file or folder of splits>.")
    early_exit_folder_kind(args.model, "--model")
    if args.target_accuracy is not None and not 0.0 < args.target_accuracy <= 1.0:
        raise ValueError(f"--target-accuracy is a fraction of full accuracy such as 0.99, got {args.target_accuracy}.")
    if args.confidence is not None and not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence is a probability such as 0.9, got {args.confidence}.")


def check_arguments(args) -> None:
    """Refuse wrong combinations, paths and prompt files (ValueError) before anything heavy is imported."""
    check_task_options(args)
    if args.task == CLASSIFICATION:
        check_classification_arguments(args)
        return
    if args.split not in ("dev", "test"):
        raise ValueError(f"--split {args.split}: the built-in prompt sets have the halves dev and test.")
    if args.fixture is not None:
        if args.model != REAL_MODEL or args.draft_model is not None or args.prompts is not None:
            raise ValueError("--fixture measures the toy fixture pair with its own prompts: drop --model, "
                             "--draft-model and --prompts.")
        unknown = sorted(set(args.kinds or ()) - set(FIXTURE_KINDS))
        if unknown:
            raise ValueError(f"--kinds {' '.join(unknown)}: the fixture's kinds are {', '.join(FIXTURE_KINDS)}.")
        return
    for option, value in (("--model", args.model), ("--draft-model", args.draft_model)):
        if value is None or (option == "--model" and value in (REAL_MODEL, REAL_MODEL_EAGLE3)):
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
        # A bad file fails here, naming it, before any model loads.
        lab_module("benchmark.prompt_sets").read_prompts_file(args.prompts, args.kinds, args.prompts_per_kind)
    else:
        unknown = sorted(set(args.kinds or ()) - set(BUILTIN_KINDS))
        if unknown:
            raise ValueError(f"--kinds {' '.join(unknown)}: the built-in kinds are {', '.join(BUILTIN_KINDS)} "
                             "(pass --prompts for your own).")


class BenchmarkCommand(PluginCommand):
    COMMAND = CommandInfo(
        name="benchmark",
        help="Time a causal LM (OpenVINO folder, checkpoint or .gguf) against plain optimum-intel at its defaults, "
        "side by side with openvino-genai and speculative generation; or, with --task text-classification, an "
        "early-exit classifier against plain OVModelForSequenceClassification on your labelled data.",
    )

    @staticmethod
    def parse_args(parser):
        # Every plain option of this parser remembers it was given (see `_StoreGiven`): `--task text-classification
        # --seed 0` is refused like `--seed 1`, and the help can still show the real defaults.
        parser.register("action", None, _StoreGiven)
        parser.register("action", "store", _StoreGiven)
        parser.add_argument(
            "--task", choices=TASKS, default=GENERATION,
            help="text-generation: a causal LM against plain OVModelForCausalLM; text-classification: an early-exit "
            "folder against plain OVModelForSequenceClassification. Default: %(default)s.",
        )
        parser.add_argument(
            "-m", "--model", default=REAL_MODEL,
            help="text-generation: OpenVINO folder, transformers checkpoint folder or .gguf file (the last two are "
            "exported once by optimum-intel at its defaults and cached); 'real' is SmolLM2-135M-Instruct, built and "
            "cached on first use; 'real-eagle3' the same with the EAGLE-3 head trained for it (trained on first use, "
            "then cached; tens of minutes on 2 cores). text-classification: the folder written by `optimum-cli export dynexec --task "
            "text-classification` or by `train-exits` (exported to a temporary folder). Default: %(default)s "
            "(text-generation); required for text-classification.",
        )
        generation = parser.add_argument_group("text-generation options")
        generation.add_argument(
            "--draft-model", default=None,
            help="Draft model in the same forms, for the draft and genai_draft modes. Default: %(default)s (the "
            "model folder's draft/ sub-folder when it has one).",
        )
        generation.add_argument(
            "--prompts", type=Path, default=None,
            help="Your own prompts instead of the built-in sets: one per line (kind 'custom'), or JSON lines "
            '{"prompt": ..., "kind": ...}. Default: %(default)s (the built-in sets).',
        )
        generation.add_argument(
            "--kinds", "--tasks", nargs="+", default=None, metavar="KIND",
            help=f"Prompt kinds to run: built-in {', '.join(BUILTIN_KINDS)}; with --prompts, kinds of that file; "
            f"with --fixture, {', '.join(FIXTURE_KINDS)}. Default: %(default)s (all of them).",
        )
        generation.add_argument(
            "--prompts-per-kind", "--prompts-per-task", type=positive_int, default=None, metavar="N",
            help=f"Prompts per kind. Default: %(default)s ({DEFAULT_PROMPTS_PER_KIND} built-in, every prompt of a "
            "--prompts file).",
        )
        generation.add_argument("--seed", type=int, default=0, help="Draws the built-in prompts. Default: %(default)s.")
        generation.add_argument(
            "--max-new-tokens", type=positive_int, default=128, metavar="N",
            help="At most this many new tokens per generation; every mode also stops at EOS, as a user's call does. "
            "Default: %(default)s.",
        )
        generation.add_argument("--modes", nargs="+", default=None, choices=MODES, metavar="MODE",
                                help=f"Modes to run among {', '.join(MODES)} (plain always runs: it is the baseline). "
                                "Default: %(default)s (every mode that applies).")
        generation.add_argument("--prompt-lookup-tokens", type=positive_int, default=5, metavar="N",
                                help="Our prompt_lookup_num_tokens. Default: %(default)s.")
        generation.add_argument(
            "--fixture", default=None, choices=["quick", "benchmark"],
            help="Measure the project's toy fixture pair (trained here on the standard library) instead of --model. "
            "Default: %(default)s.",
        )
        classification = parser.add_argument_group("text-classification options")
        classification.add_argument(
            "--dataset", default=None,
            help="Labelled texts: a .csv/.tsv/.json/.jsonl file (measured whole), or a folder of split files "
            "(train/validation/test.csv, as `python -m lab.benchmark.classification data` writes), or a "
            "cached `datasets` set. Required for text-classification.",
        )
        classification.add_argument(
            "--text-column", default="text", help="Column (or JSON key) of the texts. Default: %(default)s.",
        )
        classification.add_argument(
            "--label-column", default="label",
            help="Column (or JSON key) of the labels: class names of the model, or class indices. Default: "
            "%(default)s.",
        )
        classification.add_argument(
            "--threshold", type=unit_interval, default=None,
            help="Entropy threshold to measure at. Default: %(default)s (the one saved in the model, certified by "
            "`calibrate-exits --save-threshold`; or picked for --target-accuracy when that is given).",
        )
        classification.add_argument(
            "--target-accuracy", type=float, default=None,
            help="Instead of the saved threshold, pick the fastest one keeping this fraction (e.g. 0.99) of the full "
            "model's accuracy on the dataset's validation split (no guarantee on new data). Default: %(default)s.",
        )
        classification.add_argument(
            "--confidence", type=float, default=None,
            help="Require --target-accuracy with this confidence (e.g. 0.9, a bootstrap lower bound). "
            "Default: %(default)s (the point estimate).",
        )
        classification.add_argument(
            "--batch-sizes", type=positive_int, nargs="+", default=list(DEFAULT_BATCH_SIZES), metavar="N",
            help=f"Batch sizes to time. Default: {' '.join(map(str, DEFAULT_BATCH_SIZES))}.",
        )
        classification.add_argument(
            "--timing-examples", type=positive_int, default=DEFAULT_TIMING_EXAMPLES, metavar="N",
            help="Texts (the first N of the split) timed per repeat. Default: %(default)s.",
        )
        classification.add_argument(
            "--max-length", type=positive_int, default=None, metavar="N",
            help="Truncate texts to N tokens. Default: %(default)s (the tokenizer's own limit).",
        )
        both = parser.add_argument_group("options of both tasks")
        both.add_argument(
            "--split", default=None,
            help="text-generation: half of the built-in prompt sets, dev for tuning, test for reports. "
            f"text-classification: the split of a --dataset folder to measure on. Default: "
            f"{TASK_DEFAULTS[GENERATION]['split']} (text-generation); {CLASSIFICATION_SPLIT} (text-classification, "
            "a folder; a file is measured whole).",
        )
        both.add_argument(
            "--repeats", type=positive_int, default=None, metavar="N",
            help=f"Timed repeats (medians). Default: {TASK_DEFAULTS[GENERATION]['repeats']} (text-generation), "
            f"{CLASSIFICATION_REPEATS} (text-classification).",
        )
        both.add_argument(
            "--ov-config", type=ov_config_json, default=None, metavar="JSON",
            help='OpenVINO properties for every side alike, e.g. \'{"INFERENCE_PRECISION_HINT": "f32"}\'. '
            "Default: %(default)s (every side at its defaults: the baseline rule).",
        )
        both.add_argument("--output", type=Path, default=None,
                          help="JSON file. Default: %(default)s (results/benchmark-<model name>.json, "
                          "results/generation-<fixture>.json with --fixture, results/benchmark-<model "
                          "name>-text-classification.json with its plot in the same name ending in .png).")

    def run(self):
        args = self.args
        try:
            check_arguments(args)
        except ValueError as error:
            self.parser.error(str(error))
        if args.task == CLASSIFICATION:
            self.run_classification(args)
            return
        # openvino-genai only adds comparison rows, so its absence is a note rather than an error.
        if missing_extra("genai") is not None:
            print(f"openvino-genai is not installed, its rows are skipped ({install_hint('genai')}).")
        generation = lab_module("benchmark.generation")
        benchmark_model, format_table = generation.benchmark_model, generation.format_table
        run_fixture_benchmark = generation.run_fixture_benchmark

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
        print(f"baseline: plain optimum-intel OVModelForCausalLM ({precision}); greedy, until EOS or "
              f"{args.max_new_tokens} new tokens per prompt, median of {args.repeats} repeat(s)")
        print(f"results written to {output}")

    def run_classification(self, args) -> None:
        """`--task text-classification`: `benchmark_classifier` with the command's options; prints the table."""
        classification = lab_module("benchmark.classification")
        benchmark_classifier, format_report = classification.benchmark_classifier, classification.format_report

        try:
            report, json_path, png_path = benchmark_classifier(
                args.model, args.dataset, split=args.split, text_column=args.text_column,
                label_column=args.label_column, output=args.output, ov_config=args.ov_config,
                threshold=args.threshold, target_accuracy=args.target_accuracy, confidence=args.confidence,
                batch_sizes=tuple(args.batch_sizes), repeats=args.repeats, timing_examples=args.timing_examples,
                max_length=args.max_length,
            )
        except ValueError as error:  # data or labels this benchmark cannot use: one line, no traceback
            self.parser.error(str(error))
        print(format_report(report))
        print(f"results written to {json_path} and {png_path}")
