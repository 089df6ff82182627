"""Time any causal LM side by side: plain optimum-intel (the baseline), openvino-genai, and our speculative modes.

`benchmark_model(model, draft_model=None, prompts=None, ...)` takes an OpenVINO folder, a transformers checkpoint
folder or a `.gguf` file (the last two are exported once, as `OVModelForCausalLM.from_pretrained(..., export=True)`
does at its defaults, and cached) and runs, in one process:

- `plain`: optimum-intel `OVModelForCausalLM.generate()` at its defaults (no `ov_config`: bf16 on CPUs that have it),
  what users run today; every ratio is against it;
- `genai_plain`, `genai_prompt_lookup`, `genai_draft` (with a draft), `genai_eagle` (with an EAGLE-3 head in
  `eagle/`, served as `openvino_genai.draft_model(folder / "eagle")`): `openvino_genai.LLMPipeline` on the same IR,
  the fastest thing a user could switch to;
- ours (`OVSpeculativeModelForCausalLM`): `prompt_lookup`, `draft` (with a draft), `eagle` (when the folder has an
  `eagle/` head).

Every mode gets the same token ids (chat prompts rendered once with the tokenizer's chat template), decodes greedily
and stops at EOS or after `max_new_tokens` new tokens, as a user's call does; tokens/s counts each mode's own tokens.
(Forcing a length is not an option: openvino-genai's prompt lookup does not honour `min_new_tokens` and stops at EOS
anyway, so forced lengths would time different work on each side.) No precision is passed to any side unless the
caller gives `ov_config`, which then goes to every side alike.
Modes are interleaved per prompt and repeat, in a rotating order, so machine noise and cache effects hit them alike;
one untimed call per mode and kind warms every path first. Per prompt kind and mode: tokens/s (new tokens over the
median over repeats of the kind's summed wall time), the ratio to `plain`, tokens per verification (ours), and
agreement with `plain` (the fraction of prompts whose output is token-identical, and the mean common prefix as a
fraction of plain's output).
"""

import json
import os
import platform
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from optimum_dynexec.utils.io import atomic_directory, write_text_atomically
from optimum_dynexec.utils.model_files import OPENVINO_TOKENIZER_FILES, write_openvino_tokenizers
from .prompt_sets import BUILTIN_KINDS, BenchmarkPrompt, builtin_prompts, encode_prompt, read_prompts_file

PLAIN = "plain"
GENAI_MODES = ("genai_plain", "genai_prompt_lookup", "genai_draft", "genai_eagle")
OUR_MODES = ("prompt_lookup", "draft", "eagle")
MODES = (PLAIN,) + GENAI_MODES + OUR_MODES
REAL_MODEL = "real"
DEFAULT_PROMPTS_PER_KIND = 8

# Drafting settings of each side, recorded in the results. Ours: the prompt lookup length the package documents (the
# draft model and EAGLE run at the package's defaults). openvino-genai: the values of its own samples.
PROMPT_LOOKUP_TOKENS = 5  # the same as openvino-genai's (lengths compared in docs/benchmarks.md)
GENAI_LOOKUP_TOKENS = 5
GENAI_MAX_NGRAM_SIZE = 3
GENAI_DRAFT_TOKENS = 5
# A chain as long as ours: the depth of the folder's saved tree (eagle/eagle_config.json), else the package default.
# Chains, not genai's tree mode: in 2026.4 the tree mode's greedy output leaves the target's argmax (docs/eagle.md,
# "Serving").
GENAI_EAGLE_TOKENS = 8
REAL_MODEL_EAGLE3 = "real-eagle3"



@dataclass
class ModeResult:
    """One decoding mode on one prompt kind."""

    kind: str
    mode: str
    tokens_per_second: float
    speedup: Optional[float] = None  # tokens/s over plain's, same kind, same run
    mean_accepted_length: Optional[float] = None  # tokens per verification call (ours; None if nothing was verified)
    tokens_per_target_call: Optional[float] = None  # new tokens per target call, prefill included (ours; plain = 1)
    identical_to_plain: Optional[str] = None  # "k/n" prompts token-identical to plain's output
    agreement: Optional[float] = None  # k / n
    common_prefix: Optional[float] = None  # mean common prefix with plain's output, as a fraction of it
    prompts: int = 0
    new_tokens: int = 0
    seconds_per_repeat: List[float] = field(default_factory=list)

    @property
    def task(self) -> str:
        """The prompt kind (the name earlier versions used)."""
        return self.kind


# --------------------------------------------------------------------------------------------------- models


def resolve_model(model: Union[str, Path], option: str = "model", progress: bool = True) -> Path:
    """The OpenVINO folder to benchmark for `model`:

    - "real": the real-model fixture (SmolLM2-135M-Instruct, `lab.fixtures.real_model`);
    - "real-eagle3": the same, with the EAGLE-3 head trained for it in `eagle/` (`lab.fixtures.real_eagle3_head`;
      trained on first use);
    - a folder holding `openvino_model.xml`: itself;
    - a `.gguf` file: converted by `optimum_dynexec.gguf.checkpoint_for_gguf`, then exported as a checkpoint;
    - a transformers checkpoint folder (`config.json`): exported once by optimum-intel at its defaults, with the
      tokenizer and its OpenVINO IRs, cached under `<cache>/benchmark-exports/`.
    """
    if str(model) == REAL_MODEL:
        from lab.fixtures.real_model import real_model

        return Path(real_model(progress=progress)["openvino"])
    if str(model) == REAL_MODEL_EAGLE3:
        from lab.fixtures.real_eagle3_head import real_model_with_eagle3

        return real_model_with_eagle3(progress=progress)
    path = Path(model).expanduser()
    if not path.exists():
        also = ' (or "real", the built-in real model)' if option == "model" else ""
        raise ValueError(f"`{option}` {str(model)!r} does not exist: pass an OpenVINO folder, a transformers "
                         f"checkpoint folder or a .gguf file{also}.")
    from optimum_dynexec.gguf import checkpoint_for_gguf, is_gguf

    if path.is_file():
        if not is_gguf(path):
            raise ValueError(f"`{option}` {str(model)!r} is a file but not a GGUF model; pass a folder or a .gguf "
                             "file.")
        return export_checkpoint(checkpoint_for_gguf(path, progress=progress), progress)
    if (path / "openvino_model.xml").is_file():
        return path
    if (path / "config.json").is_file():
        return export_checkpoint(path, progress)
    raise ValueError(f"`{option}` {str(model)!r} holds neither openvino_model.xml (an OpenVINO export) nor config.json "
                     "(a transformers checkpoint).")


def _checkpoint_key(checkpoint: Path) -> str:
    import hashlib
    import importlib.metadata

    digest = hashlib.sha256(str(checkpoint.resolve()).encode())
    for file in sorted(checkpoint.iterdir()):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for package in ("optimum-intel", "optimum", "openvino", "openvino-tokenizers", "transformers", "torch", "nncf"):
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:16]


def export_checkpoint(checkpoint: Path, progress: bool = True) -> Path:
    """`checkpoint` exported as a user of plain optimum-intel gets it (`OVModelForCausalLM.from_pretrained(...,
    export=True)`, its default weight format), with the tokenizer and the OpenVINO tokenizer IRs openvino-genai
    reads; cached by the checkpoint's path, file sizes and times and the exporting packages' versions."""
    from optimum_dynexec.commands.export import save_tokenizers
    from lab.fixtures.cache import fixture_cache_dir

    checkpoint = Path(checkpoint)
    destination = fixture_cache_dir() / "benchmark-exports" / f"{checkpoint.name}-{_checkpoint_key(checkpoint)}"
    if not (destination / "openvino_model.xml").is_file():
        from optimum.intel import OVModelForCausalLM

        if progress:
            print(f"Exporting {checkpoint} to OpenVINO (once; cached in {destination})")
        with atomic_directory(destination) as staging:
            model = OVModelForCausalLM.from_pretrained(checkpoint, export=True, compile=False)
            model.save_pretrained(staging)
            del model
            save_tokenizers(str(checkpoint), staging)
    return destination


def _genai_folder(folder: Path, tokenizer, stack: ExitStack) -> Tuple[Optional[Path], Optional[str]]:
    """A folder openvino-genai can load for `folder`: itself when it holds the OpenVINO tokenizer IRs, else a
    temporary view (links to its files) with IRs converted from `tokenizer`; `(None, reason)` when that fails."""
    if all((folder / name).is_file() for name in OPENVINO_TOKENIZER_FILES):
        return folder, None
    try:
        view = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dynexec-genai-view-")))
        for entry in folder.iterdir():
            (view / entry.name).symlink_to(entry.resolve())
        write_openvino_tokenizers(tokenizer, view)
    except Exception as error:  # openvino-genai only adds comparison rows
        return None, f"{folder} has no OpenVINO tokenizer IRs and converting the tokenizer failed ({error})"
    return view, None


# --------------------------------------------------------------------------------------------------- prompts


def _prompt_set(prompts, kinds, prompts_per_kind, tokenizer, split, seed,
                vocab_size) -> Dict[str, List[BenchmarkPrompt]]:
    if prompts is None:
        return builtin_prompts(BUILTIN_KINDS if kinds is None else kinds,
                               DEFAULT_PROMPTS_PER_KIND if prompts_per_kind is None else prompts_per_kind,
                               tokenizer, split, seed, vocab_size)
    if isinstance(prompts, (str, Path)):
        return read_prompts_file(prompts, kinds, prompts_per_kind)
    if not isinstance(prompts, Mapping):
        prompts = {"custom": list(prompts)}
    normalised = {}
    for kind, items in prompts.items():
        items = list(items)
        if not items:
            raise ValueError(f"The prompts of kind {kind!r} are empty.")
        normalised[kind] = [
            item if isinstance(item, BenchmarkPrompt)
            else BenchmarkPrompt(kind, item) if isinstance(item, str)
            else BenchmarkPrompt(kind, token_ids=tuple(int(token) for token in item), raw=True)
            for item in items
        ]
    if not normalised:
        raise ValueError("`prompts` holds no prompts.")
    return normalised


# --------------------------------------------------------------------------------------------------- runners


class _Runners:
    """Loads every mode's model once and runs one greedy generation (until EOS, at most `max_new_tokens` tokens)."""

    def __init__(self, folder: Path, draft_folder: Optional[Path], tokenizer, ov_config: Optional[dict],
                 modes: Optional[Sequence[str]], max_new_tokens: int, prompt_lookup_tokens: int, stack: ExitStack):
        from optimum.intel import OVModelForCausalLM

        from optimum_dynexec import OVSpeculativeModelForCausalLM

        self.max_new_tokens = max_new_tokens
        self.prompt_lookup_tokens = prompt_lookup_tokens
        self.skipped: Dict[str, str] = {}
        load = {"ov_config": dict(ov_config)} if ov_config else {}
        self.plain = OVModelForCausalLM.from_pretrained(folder, **load)
        eos = self.plain.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = [] if eos is None else [int(token) for token in np.atleast_1d(eos)]
        pad = self.plain.generation_config.pad_token_id
        pad = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        # Pure greedy on every side: the model's generation_config.json may carry a repetition penalty or n-gram ban
        # that openvino-genai's fresh GenerationConfig would not apply.
        self.hf_settings = dict(max_new_tokens=max_new_tokens, do_sample=False,
                                num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0,
                                eos_token_id=self.eos_ids or None, pad_token_id=pad)

        wanted = set(MODES if modes is None else modes) | {PLAIN}  # plain: the baseline every ratio needs
        self.ours = None
        if wanted & set(OUR_MODES):
            self.ours = OVSpeculativeModelForCausalLM.from_pretrained(
                folder, **({"draft_model": draft_folder} if draft_folder is not None else {}), **load)
        has_draft = draft_folder is not None
        has_eagle = self.ours is not None and getattr(self.ours, "eagle", None) is not None
        available = {PLAIN, "genai_plain", "genai_prompt_lookup", "prompt_lookup"}
        if has_draft:
            available |= {"genai_draft", "draft"}
        else:
            self.skipped.update({"genai_draft": "no draft model", "draft": "no draft model"})
        if has_eagle:
            available.add("eagle")
        elif "eagle" in wanted:
            self.skipped["eagle"] = f"no EAGLE head in {folder / 'eagle'}"
        if (folder / "eagle" / "openvino_model.xml").is_file():
            available.add("genai_eagle")
        elif "genai_eagle" in wanted:
            self.skipped["genai_eagle"] = f"no EAGLE-3 draft IR in {folder / 'eagle'}"
        self.modes = [mode for mode in MODES if mode in wanted and mode in available]
        self.genai = self._genai_pipelines(folder, draft_folder, tokenizer, ov_config, stack)
        self.modes = [mode for mode in self.modes if mode not in GENAI_MODES or mode in self.genai]

    def _genai_pipelines(self, folder, draft_folder, tokenizer, ov_config, stack) -> dict:
        wanted = [mode for mode in self.modes if mode in GENAI_MODES]
        if not wanted:
            return {}
        try:
            import openvino_genai
        except ImportError:
            for mode in wanted:
                self.skipped[mode] = 'openvino-genai is not installed (pip install "optimum-dynexec[genai]")'
            return {}
        from optimum_dynexec.speculative.modeling import drafter_ov_config

        properties = dict(ov_config or {})
        genai_folder, reason = _genai_folder(folder, tokenizer, stack)
        if genai_folder is None:
            for mode in wanted:
                self.skipped[mode] = reason
            return {}
        pipelines = {}
        if "genai_plain" in wanted:
            pipelines["genai_plain"] = openvino_genai.LLMPipeline(str(genai_folder), "CPU", **properties)
        if "genai_prompt_lookup" in wanted:
            pipelines["genai_prompt_lookup"] = openvino_genai.LLMPipeline(str(genai_folder), "CPU", prompt_lookup=True,
                                                                          **properties)
        if "genai_draft" in wanted:
            draft_view, reason = _genai_folder(Path(draft_folder), tokenizer, stack)
            if draft_view is None:
                self.skipped["genai_draft"] = reason
            else:
                # Our rule for drafters, applied to openvino-genai's draft too: everything but the precision settings.
                draft = openvino_genai.draft_model(str(draft_view), "CPU", **drafter_ov_config(ov_config))
                pipelines["genai_draft"] = openvino_genai.LLMPipeline(str(genai_folder), "CPU", draft_model=draft,
                                                                      **properties)
        if "genai_eagle" in wanted:
            saved = folder / "eagle" / "eagle_config.json"
            self.genai_eagle_tokens = (json.loads(saved.read_text())["tree"]["depth"] if saved.is_file()
                                       else GENAI_EAGLE_TOKENS)
            head = openvino_genai.draft_model(str(folder / "eagle"), "CPU", **drafter_ov_config(ov_config))
            pipelines["genai_eagle"] = openvino_genai.LLMPipeline(str(genai_folder), "CPU", draft_model=head,
                                                                  **properties)
        return pipelines

    def genai_config(self, mode: str):
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        config.max_new_tokens = self.max_new_tokens
        config.do_sample = False
        if self.eos_ids:
            config.eos_token_id = self.eos_ids[0]
            config.stop_token_ids = set(self.eos_ids)
        if mode == "genai_prompt_lookup":
            config.num_assistant_tokens = GENAI_LOOKUP_TOKENS
            config.max_ngram_size = GENAI_MAX_NGRAM_SIZE
        elif mode == "genai_draft":
            config.num_assistant_tokens = GENAI_DRAFT_TOKENS
        elif mode == "genai_eagle":
            config.num_assistant_tokens = self.genai_eagle_tokens
        return config

    def prepare(self, token_ids: Sequence[int]) -> dict:
        """Each side's inputs for one prompt, built outside the timed call."""
        import torch

        ids = np.asarray(token_ids, dtype=np.int64)[None]
        inputs = {"hf": dict(input_ids=torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)))}
        if self.genai:
            import openvino as ov
            import openvino_genai

            inputs["genai"] = openvino_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        return inputs

    def run(self, mode: str, inputs: dict, genai_configs: dict) -> Tuple[np.ndarray, Optional[dict]]:
        """New tokens of one greedy generation, and (ours) what the decoding loop did: `per_verification` (tokens per
        verification call, `None` when no draft was verified) and `per_call` (new tokens per target call)."""
        if mode in GENAI_MODES:
            result = self.genai[mode].generate(inputs["genai"], genai_configs[mode])
            return np.asarray(result.tokens[0], dtype=np.int64), None
        hf = inputs["hf"]
        prompt_length = hf["input_ids"].shape[1]
        if mode == PLAIN:
            return self.plain.generate(**hf, **self.hf_settings)[0, prompt_length:].numpy(), None
        extra = {}
        if mode == "prompt_lookup":
            extra = dict(prompt_lookup_num_tokens=self.prompt_lookup_tokens)
        elif mode == "draft" and getattr(self.ours, "eagle", None) is not None:
            extra = dict(assistant_model=self.ours.draft_model)  # EAGLE is what runs by default when both are there
        tokens = self.ours.generate(**hf, **self.hf_settings, **extra)[0, prompt_length:].numpy()
        stats = self.ours.last_decoding_stats
        if stats is None:  # the call decoded plainly (optimum-intel's own loop)
            return tokens, None
        return tokens, {
            "per_verification": float(stats.mean_accepted_length) if stats.accepted_lengths else None,
            "per_call": stats.new_tokens / stats.target_calls if stats.target_calls else None,
        }


# --------------------------------------------------------------------------------------------------- the benchmark


def _mean_of(loop_stats: dict, mode: str, keys, name: str) -> Optional[float]:
    values = [stats[name] for key in keys for stats in loop_stats[(mode, key)] if stats[name] is not None]
    return float(np.mean(values)) if values else None


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    length = min(len(a), len(b))
    different = np.nonzero(a[:length] != b[:length])[0]
    return int(different[0]) if len(different) else length


def benchmark_model(
    model: Union[str, Path] = REAL_MODEL,
    draft_model: Union[str, Path, None] = None,
    prompts=None,
    max_new_tokens: int = 128,
    repeats: int = 3,
    kinds: Optional[Sequence[str]] = None,
    prompts_per_kind: Optional[int] = None,
    split: str = "test",
    seed: int = 0,
    ov_config: Optional[dict] = None,
    modes: Optional[Sequence[str]] = None,
    prompt_lookup_tokens: int = PROMPT_LOOKUP_TOKENS,
    output: Union[str, Path, None] = None,
    progress: bool = True,
    tokenizer=None,
    context: Optional[dict] = None,
) -> Tuple[List[ModeResult], Path]:
    """Benchmark `model` in every mode that applies, print nothing, write the JSON; returns `(results, json_path)`.

    Args:
        model: "real" (SmolLM2-135M-Instruct), an OpenVINO folder, a transformers checkpoint folder or a `.gguf` file
            (see `resolve_model`).
        draft_model: the same forms; defaults to `<model folder>/draft` when it holds an OpenVINO model.
        prompts: `None` for the built-in sets; a prompts file (`prompt_sets.read_prompts_file`); a dict kind -> list
            of strings (user messages), token-id lists or `BenchmarkPrompt`s; or a plain list (kind "custom").
        kinds: the built-in kinds to run (default all of `BUILTIN_KINDS`), or the kinds to keep from a prompts file
            (default all it holds).
        prompts_per_kind: built-in prompts per kind (default `DEFAULT_PROMPTS_PER_KIND`), or at most that many per
            kind from a prompts file (default all).
        max_new_tokens: at most this many new tokens per generation (each side stops at EOS before), on every side.
        repeats: timed repeats; tokens/s is taken at the median.
        split: "test" for reports, "dev" for tuning (the built-in sets' two disjoint halves).
        ov_config: OpenVINO properties for every side (plain, ours, openvino-genai) alike; `None` leaves every side
            at its defaults (the baseline rule). A draft gets it without its precision settings, on both sides.
        modes: a subset of `MODES` (plain always runs); default every mode that applies.
        prompt_lookup_tokens: our `prompt_lookup_num_tokens`.
        output: the JSON file; default `results/benchmark-<model name>.json` (the folder's or file's name, or "real").
        tokenizer: the tokenizer to render prompts with; default the one in the model folder.
        context: extra entries for the JSON's context.
    """
    for name, value in (("max_new_tokens", max_new_tokens), ("repeats", repeats),
                        ("prompt_lookup_tokens", prompt_lookup_tokens)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if prompts_per_kind is not None and (not isinstance(prompts_per_kind, int) or prompts_per_kind < 1):
        raise ValueError(f"`prompts_per_kind` must be a positive integer, got {prompts_per_kind!r}.")
    unknown = sorted(set(modes or ()) - set(MODES))
    if unknown:
        raise ValueError(f"Unknown modes {unknown}; pick from {list(MODES)}.")
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoTokenizer

    folder = resolve_model(model, "model", progress)
    if draft_model is not None:
        draft_folder = resolve_model(draft_model, "draft_model", progress)
    else:
        draft_folder = folder / "draft" if (folder / "draft" / "openvino_model.xml").is_file() else None
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as error:
            raise ValueError(f"{folder} holds no tokenizer to render the prompts with ({error}); pass `tokenizer=`.") \
                from error
    config = AutoConfig.from_pretrained(folder)
    prompt_set = _prompt_set(prompts, kinds, prompts_per_kind, tokenizer, split, seed,
                             getattr(config, "vocab_size", None))
    encoded = {kind: [encode_prompt(prompt, tokenizer) for prompt in items] for kind, items in prompt_set.items()}
    limit = getattr(config, "max_position_embeddings", None)
    for kind, items in encoded.items():
        for index, ids in enumerate(items):
            if not ids:
                raise ValueError(f"Prompt {index} of kind {kind!r} encodes to no tokens.")
            if limit and len(ids) + max_new_tokens > limit:
                raise ValueError(f"Prompt {index} of kind {kind!r} has {len(ids)} tokens: with {max_new_tokens} new "
                                 f"tokens it exceeds the model's {limit} positions.")

    with ExitStack() as stack:
        runners = _Runners(folder, draft_folder, tokenizer, ov_config, modes, max_new_tokens, prompt_lookup_tokens,
                           stack)
        order = [(kind, index) for kind, items in encoded.items() for index in range(len(items))]
        inputs = {key: runners.prepare(encoded[key[0]][key[1]]) for key in order}
        genai_configs = {mode: runners.genai_config(mode) for mode in runners.genai}
        run_modes = runners.modes
        seconds = {(mode, key): [] for mode in run_modes for key in order}
        outputs: Dict[tuple, np.ndarray] = {}
        accepted = {(mode, key): [] for mode in run_modes for key in order}
        warm_up = [(kind, 0) for kind in encoded]
        bar = tqdm(total=len(run_modes) * (len(warm_up) + repeats * len(order)), desc="benchmark", unit="generation",
                   disable=not progress)
        # One untimed call per mode and kind compiles and warms each path (first-call allocations, prompt shapes).
        for key in warm_up:
            for mode in run_modes:
                bar.set_postfix_str(f"warm-up {key[0]} {mode}")
                runners.run(mode, inputs[key], genai_configs)
                bar.update()
        for repeat in range(repeats):
            for position, key in enumerate(order):
                shift = (repeat * len(order) + position) % len(run_modes)
                for mode in run_modes[shift:] + run_modes[:shift]:
                    bar.set_postfix_str(f"{key[0]} {mode}")
                    start = time.perf_counter()
                    tokens, loop_stats = runners.run(mode, inputs[key], genai_configs)
                    seconds[(mode, key)].append(time.perf_counter() - start)
                    if repeat == 0:
                        outputs[(mode, key)] = tokens
                    if loop_stats is not None:
                        accepted[(mode, key)].append(loop_stats)
                    bar.update()
        bar.close()
        skipped = dict(runners.skipped)
        genai_eagle_tokens = getattr(runners, "genai_eagle_tokens", None)
        default_precision = _compiled_precision(runners.plain)

    results = []
    for kind, items in encoded.items():
        keys = [(kind, index) for index in range(len(items))]
        for mode in run_modes:
            per_repeat = [sum(seconds[(mode, key)][repeat] for key in keys) for repeat in range(repeats)]
            new_tokens = sum(len(outputs[(mode, key)]) for key in keys)
            result = ModeResult(kind, mode, new_tokens / median(per_repeat), prompts=len(keys), new_tokens=new_tokens,
                                seconds_per_repeat=per_repeat)
            per_verification = _mean_of(accepted, mode, keys, "per_verification")
            per_call = _mean_of(accepted, mode, keys, "per_call")
            result.mean_accepted_length = per_verification
            result.tokens_per_target_call = per_call
            if mode != PLAIN:
                same = sum(np.array_equal(outputs[(mode, key)], outputs[(PLAIN, key)]) for key in keys)
                result.identical_to_plain = f"{same}/{len(keys)}"
                result.agreement = same / len(keys)
                result.common_prefix = float(np.mean([
                    _common_prefix(outputs[(mode, key)], outputs[(PLAIN, key)]) / max(1, len(outputs[(PLAIN, key)]))
                    for key in keys]))
            results.append(result)
        baseline = next(result for result in results if result.kind == kind and result.mode == PLAIN)
        for result in results:
            if result.kind == kind:
                result.speedup = result.tokens_per_second / baseline.tokens_per_second

    per_prompt = []
    for kind, index in order:
        prompt = prompt_set[kind][index]
        per_prompt.append({
            "kind": kind, "index": index, "task": prompt.task, "source": prompt.source,
            "prompt_tokens": len(encoded[kind][index]), "text": prompt.text,
            "modes": {mode: {
                "seconds": seconds[(mode, (kind, index))],
                "identical_to_plain": bool(np.array_equal(outputs[(mode, (kind, index))],
                                                          outputs[(PLAIN, (kind, index))])),
                "common_prefix_tokens": _common_prefix(outputs[(mode, (kind, index))], outputs[(PLAIN, (kind, index))]),
                "tokens_per_verification": _mean_of(accepted, mode, [(kind, index)], "per_verification"),
                "tokens_per_target_call": _mean_of(accepted, mode, [(kind, index)], "per_call"),
                "output_ids": outputs[(mode, (kind, index))].tolist(),
            } for mode in run_modes},
        })
    full_context = {
        "model": str(model), "openvino_folder": str(folder),
        "draft_folder": None if draft_folder is None else str(draft_folder),
        "ov_config": ov_config or None,
        "precision": ("device defaults on every side (no ov_config)" if not ov_config else
                      "the given ov_config on every side"),
        "plain_inference_precision": default_precision,
        "max_new_tokens": max_new_tokens, "stops_at_eos": True, "repeats": repeats,
        "prompts": "built-in" if prompts is None else (str(prompts) if isinstance(prompts, (str, Path)) else "given"),
        "split": split, "seed": seed,
        "prompts_per_kind": {kind: len(items) for kind, items in encoded.items()},
        "mean_prompt_tokens": {kind: float(np.mean([len(ids) for ids in items])) for kind, items in encoded.items()},
        "modes": run_modes, "skipped_modes": skipped,
        "settings": {"prompt_lookup_num_tokens": prompt_lookup_tokens,
                     "genai_prompt_lookup": {"num_assistant_tokens": GENAI_LOOKUP_TOKENS,
                                             "max_ngram_size": GENAI_MAX_NGRAM_SIZE},
                     "genai_draft": {"num_assistant_tokens": GENAI_DRAFT_TOKENS},
                     "genai_eagle": {"num_assistant_tokens": genai_eagle_tokens},
                     "draft": "package defaults", "eagle": "package defaults"},
        "machine": _machine(),
        **(context or {}),
    }
    name = str(model) if str(model) in (REAL_MODEL, REAL_MODEL_EAGLE3) else Path(str(model)).expanduser().resolve().stem
    path = Path(output) if output is not None else Path("results") / f"benchmark-{name}.json"
    write_results(results, path, full_context, per_prompt)
    return results, path


def _compiled_precision(plain) -> Optional[str]:
    """The inference precision plain optimum-intel's compiled model runs at (what "defaults" meant on this CPU)."""
    try:
        from optimum_dynexec.openvino_cpu import compiled_precision

        return compiled_precision(plain)
    except Exception:
        return None


def _machine() -> dict:
    import importlib.metadata

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for package in ("openvino", "openvino-genai", "openvino-tokenizers", "optimum-intel", "transformers",
                    "optimum-dynexec"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": list(os.getloadavg()), "versions": versions}


def format_table(results: List[ModeResult]) -> str:
    """A plain-text table, one row per prompt kind and mode."""
    header = ("kind", "mode", "tok/s", "vs plain", "tok/verify", "tok/call", "identical", "common prefix")
    rows = [header] + [
        (r.kind, r.mode, f"{r.tokens_per_second:.1f}", "" if r.speedup is None else f"{r.speedup:.2f}x",
         "" if r.mean_accepted_length is None else f"{r.mean_accepted_length:.2f}",
         "" if r.tokens_per_target_call is None else f"{r.tokens_per_target_call:.2f}", r.identical_to_plain or "",
         "" if r.common_prefix is None else f"{r.common_prefix:.0%}")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_results(results: List[ModeResult], path: Path, context: dict, prompts: Optional[list] = None) -> None:
    """Write the results, their context and the per-prompt details as JSON, in one step (`write_text_atomically`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"context": context, "results": [asdict(result) for result in results]}
    if prompts is not None:
        payload["prompts"] = prompts
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------- toy fixture


FIXTURE_KINDS = ("completion", "editing", "random")


def exported_fixture(fixture, weight_format: str = "fp32", progress: bool = True) -> Path:
    """The fixture's target + draft exported by `optimum-cli export dynexec`, cached beside the draft's folder (the
    pair's entry, or the self-distilled draft's), so a new draft never reuses an export of the old one."""
    from optimum_dynexec.commands.export import export_speculative

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
    tasks=FIXTURE_KINDS,
    ov_config: Optional[dict] = None,
    output: Optional[Path] = None,
    progress: bool = True,
    modes: Optional[Sequence[str]] = None,
):
    """Build (or load) the toy causal-LM fixture pair of `size`, export it, and run `benchmark_model` on it with its
    held-out prompts (completion, editing, random); returns `(results, context, json_path)`."""
    from lab.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts

    fixture = build_causal_lm_fixture(size, progress=progress)
    model_dir = exported_fixture(fixture, progress=progress)
    prompts = {task: [BenchmarkPrompt(task, text, task=task, source=f"fixture {size} held-out", raw=True)
                      for text in evaluation_prompts(fixture, task, prompts_per_task)] for task in tasks}
    context = {"fixture": {"size": size, "path": str(fixture.path), "quality": fixture.quality}}
    output = Path(output) if output is not None else Path("results") / f"generation-{size}.json"
    results, output = benchmark_model(model_dir, prompts=prompts, max_new_tokens=max_new_tokens, repeats=repeats,
                                      ov_config=ov_config, modes=modes, output=output, progress=progress,
                                      context=context)
    return results, context, output
