"""Time plain vs speculative generation on the same OpenVINO target, in one run, and check they agree.

Every mode decodes the same prompts greedily to the same number of new tokens (EOS ignored), modes interleaved
within each repeat so that machine noise hits them alike; tokens/s is the median over repeats of (new tokens /
wall time) summed over the prompts. Speculative greedy output is compared token by token with plain output.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Dict, List, Optional

import numpy as np


PLAIN = "plain"


@dataclass
class ModeResult:
    """One decoding mode on one task."""

    task: str
    mode: str
    tokens_per_second: float
    speedup: Optional[float] = None
    mean_accepted_length: Optional[float] = None
    identical_to_plain: Optional[str] = None
    seconds_per_repeat: List[float] = field(default_factory=list)


SPECULATIVE_MODES = ("draft", "prompt_lookup")
GENAI_MODES = ("genai_plain", "genai_draft")


def _genai_pipelines(model_dir: Path, ov_config: dict, modes: List[str]):
    """openvino-genai pipelines on the same IR pair, where openvino-genai and the tokenizer IRs are present."""
    try:
        import openvino_genai
    except ImportError:
        return {}
    if not (model_dir / "openvino_tokenizer.xml").is_file():
        return {}
    pipelines = {}
    if "genai_plain" in modes:
        pipelines["genai_plain"] = openvino_genai.LLMPipeline(str(model_dir), "CPU", **ov_config)
    draft_dir = model_dir / "draft"
    if "genai_draft" in modes and (draft_dir / "openvino_model.xml").is_file():
        # The same rule as our drafters: the draft inherits everything but the precision settings.
        from optimum_dynexec.speculative.modeling import drafter_ov_config

        draft = openvino_genai.draft_model(str(draft_dir), "CPU", **drafter_ov_config(ov_config))
        pipelines["genai_draft"] = openvino_genai.LLMPipeline(str(model_dir), "CPU", draft_model=draft, **ov_config)
    return pipelines


def benchmark_generation(
    model_dir: Path,
    prompts: Dict[str, List[str]],
    modes: Dict[str, List[str]],
    max_new_tokens: int = 128,
    repeats: int = 3,
    prompt_lookup_tokens: int = 8,
    ov_config: Optional[dict] = None,
    progress: bool = True,
) -> List[ModeResult]:
    """Measure each task's modes; `model_dir` is an `optimum-cli export dynexec` output (target + `draft/`).

    Args:
        prompts: task name -> prompt strings.
        modes: task name -> modes to run among "plain" (optimum-intel `generate()`), "draft", "prompt_lookup",
            "genai_plain", "genai_draft" (openvino-genai, when installed).
        ov_config: OpenVINO properties for every model (speculative models default to f32; pass the same here
            so plain and speculative run the same precision).
    """
    from optimum.intel import OVModelForCausalLM
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG, OVSpeculativeModelForCausalLM

    ov_config = dict(EXACT_PRECISION_CONFIG if ov_config is None else ov_config)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    plain = OVModelForCausalLM.from_pretrained(model_dir, ov_config=ov_config)
    speculative = OVSpeculativeModelForCausalLM.from_pretrained(model_dir, ov_config=ov_config)
    all_modes = sorted({mode for task_modes in modes.values() for mode in task_modes})
    genai = _genai_pipelines(Path(model_dir), ov_config, all_modes)

    encoded = {task: [tokenizer(text, return_tensors="pt") for text in texts] for task, texts in prompts.items()}
    for mode in all_modes:
        if mode not in (PLAIN,) + SPECULATIVE_MODES + GENAI_MODES:
            raise ValueError(f"Unknown mode {mode!r}: pick from {(PLAIN,) + SPECULATIVE_MODES + GENAI_MODES}.")
    runs = [(task, mode) for task, task_modes in modes.items() for mode in task_modes
            if mode not in GENAI_MODES or mode in genai]
    seconds = {run: [] for run in runs}
    outputs: Dict[tuple, List[np.ndarray]] = {}
    accepted_lengths = {run: [] for run in runs}
    common = dict(max_new_tokens=max_new_tokens, min_new_tokens=None, do_sample=False, eos_token_id=None,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    # One untimed pass compiles and warms every path (first-call allocations would otherwise land on one mode).
    bar = tqdm(total=(repeats + 1) * sum(len(encoded[task]) for task, _ in runs), desc="benchmark generation",
               disable=not progress)
    for repeat in range(repeats + 1):
        for run in runs:
            task, mode = run
            elapsed = 0.0
            for index, inputs in enumerate(encoded[task]):
                start = time.perf_counter()
                if mode == PLAIN:
                    new_tokens = plain.generate(**inputs, **common)[0, inputs["input_ids"].shape[1]:].numpy()
                elif mode.startswith("genai"):
                    new_tokens = _genai_generate(genai[mode], inputs, max_new_tokens, mode == "genai_draft")
                else:
                    lookup = dict(prompt_lookup_num_tokens=prompt_lookup_tokens) if mode == "prompt_lookup" else {}
                    result = speculative.generate(**inputs, **common, **lookup)
                    new_tokens = result[0, inputs["input_ids"].shape[1]:].numpy()
                    if repeat > 0:
                        accepted_lengths[run].append(speculative.last_decoding_stats.mean_accepted_length)
                elapsed += time.perf_counter() - start
                if repeat == 0:
                    outputs.setdefault(run, []).append(new_tokens)
                bar.update()
            if repeat > 0:
                seconds[run].append(elapsed)
    bar.close()

    results = []
    for run in runs:
        task, mode = run
        total_tokens = sum(len(tokens) for tokens in outputs[run])
        rate = total_tokens / median(seconds[run])
        result = ModeResult(task, mode, rate, seconds_per_repeat=seconds[run])
        if accepted_lengths[run]:
            result.mean_accepted_length = float(np.mean(accepted_lengths[run]))
        if (task, PLAIN) in outputs and mode != PLAIN:
            same = sum(np.array_equal(a, b) for a, b in zip(outputs[run], outputs[(task, PLAIN)]))
            result.identical_to_plain = f"{same}/{len(outputs[run])}"
        results.append(result)
    for result in results:
        baseline = next((r for r in results if r.task == result.task and r.mode == PLAIN), None)
        if baseline is not None:
            result.speedup = result.tokens_per_second / baseline.tokens_per_second
    return results


def _genai_generate(pipeline, inputs, max_new_tokens: int, with_draft: bool) -> np.ndarray:
    import openvino as ov
    import openvino_genai

    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = max_new_tokens
    config.ignore_eos = True
    config.do_sample = False
    if with_draft:
        config.num_assistant_tokens = 5  # openvino-genai's documented setting for speculative decoding
    tokenized = openvino_genai.TokenizedInputs(
        ov.Tensor(inputs["input_ids"].numpy()), ov.Tensor(inputs["attention_mask"].numpy())
    )
    result = pipeline.generate(tokenized, config)
    return np.asarray(result.tokens[0], dtype=np.int64)


def format_table(results: List[ModeResult]) -> str:
    """A plain-text table of the results, one row per task and mode."""
    header = ("task", "mode", "tok/s", "vs plain", "accepted/verify", "identical")
    rows = [header] + [
        (r.task, r.mode, f"{r.tokens_per_second:.1f}", "" if r.speedup is None else f"{r.speedup:.2f}x",
         "" if r.mean_accepted_length is None else f"{r.mean_accepted_length:.2f}", r.identical_to_plain or "")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_results(results: List[ModeResult], path: Path, context: dict) -> None:
    """Write the results and their context (models, settings, fixture quality) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"context": context, "results": [asdict(result) for result in results]}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(path)


TASK_MODES = {
    "completion": ["plain", "draft", "prompt_lookup", "genai_plain", "genai_draft"],
    "editing": ["plain", "prompt_lookup", "draft"],
    "random": ["plain", "draft", "prompt_lookup"],
}


def exported_fixture(fixture, weight_format: str = "fp32", progress: bool = True) -> Path:
    """The fixture's target + draft exported by `optimum-cli export dynexec`, cached beside the draft's folder (the
    pair's entry, or the self-distilled draft's), so a new draft never reuses an export of the old one."""
    from optimum_dynexec.commands.export import export_speculative
    from optimum_dynexec.fixtures.cache import atomic_directory

    exported = Path(fixture.draft_dir).parent / f"openvino-{weight_format}"
    if not (exported / "dynexec_config.json").is_file():
        with atomic_directory(exported) as staging:
            export_speculative(str(fixture.target_dir), staging, str(fixture.draft_dir), weight_format)
    return exported


def run_fixture_benchmark(
    size: str = "benchmark",
    prompts_per_task: int = 8,
    max_new_tokens: int = 128,
    repeats: int = 3,
    tasks=tuple(TASK_MODES),
    ov_config: Optional[dict] = None,
    output: Optional[Path] = None,
    progress: bool = True,
):
    """Build (or load) the causal-LM fixture of `size`, export it, benchmark every task, print and save results."""
    from optimum_dynexec.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts

    fixture = build_causal_lm_fixture(size, progress=progress)
    model_dir = exported_fixture(fixture, progress=progress)
    prompts = {task: evaluation_prompts(fixture, task, prompts_per_task) for task in tasks}
    results = benchmark_generation(
        model_dir, prompts, {task: TASK_MODES[task] for task in tasks}, max_new_tokens, repeats,
        ov_config=ov_config, progress=progress,
    )
    context = {
        "fixture": {"size": size, "path": str(fixture.path), "quality": fixture.quality},
        "prompts_per_task": prompts_per_task, "max_new_tokens": max_new_tokens, "repeats": repeats,
        "ov_config": ov_config or "EXACT_PRECISION_CONFIG (f32)",
    }
    output = Path(output) if output is not None else Path("results") / f"generation-{size}.json"
    write_results(results, output, context)
    return results, context, output
