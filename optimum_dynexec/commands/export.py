"""`optimum-cli export dynexec`: export a model with its dynamic-execution parts, in the `save_pretrained` layout."""

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Optional

from optimum.commands.base import CommandInfo

from optimum_dynexec.utils.model_files import looks_like_local_path, write_openvino_tokenizers

from .base import PluginCommand

logger = logging.getLogger(__name__)

WEIGHT_FORMATS = ("fp32", "int8", "int4")


class ModelArgumentError(ValueError):
    """A model option (`--model`, `--draft-model`, `--eagle-head`) cannot be used as given: a usage error."""


def resolve_model_argument(value: Optional[str], option: str) -> Optional[str]:
    """The value of a model option to load from: an existing local path (with `~` expanded) or a Hub id.

    Raises `ModelArgumentError` naming `option` when `value` looks like a path that does not exist or is not a valid
    Hub id; nothing is loaded (no network) so this runs before any heavy import or write.
    """
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.exists():
        return str(path)
    if looks_like_local_path(value):
        raise ModelArgumentError(
            f"`{option}` {value!r} is neither a local folder nor loadable: {path.absolute()} does not exist."
        )
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError as error:
        raise ModelArgumentError(
            f"`{option}` {value!r} is neither a local folder nor a valid Hugging Face Hub model id ({error})"
        ) from error
    return value


@contextmanager
def model_load_errors(options: Dict[str, Optional[str]]):
    """Turn a failed load of the models given as `options` ({"--model": value, ...}) into a `ModelArgumentError`.

    The options whose value is not a local path are the ones the Hub was asked for, so they are the ones named; the
    original error stays chained (and its first line quoted) for what the Hub or transformers said.
    """
    import httpx
    from huggingface_hub.errors import HFValidationError

    try:
        yield
    except (OSError, HFValidationError, httpx.HTTPError) as error:
        given = {option: value for option, value in options.items() if value is not None}
        remote = {option: value for option, value in given.items() if not Path(value).exists()}
        named = remote or given
        subject = ", ".join(f"`{option}` {value!r}" for option, value in named.items())
        plural = len(named) > 1
        if remote:
            problem = "are neither local folders nor loadable" if plural else "is neither a local folder nor loadable"
        else:
            problem = "could not be loaded"
        detail = (str(error).strip().splitlines() or [""])[0]
        raise ModelArgumentError(f"{subject} {problem} ({type(error).__name__}: {detail})") from error


def quantization_config_for(weight_format: str):
    """The NNCF weight-compression config that `--weight-format` names (`None` for fp32)."""
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"`--weight-format` must be one of {WEIGHT_FORMATS}, got {weight_format!r}.")
    if weight_format == "fp32":
        return None
    from optimum.intel import OVWeightQuantizationConfig

    # Tiny layers cannot be split in groups of 128; ratio/group size follow optimum-cli's int4 defaults otherwise.
    return OVWeightQuantizationConfig(bits=8) if weight_format == "int8" else OVWeightQuantizationConfig(
        bits=4, group_size=-1, ratio=1.0
    )


def save_tokenizers(model_id: str, output: Path) -> None:
    """Save the Hugging Face tokenizer, plus its OpenVINO tokenizer/detokenizer IRs (for openvino-genai)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
    except (OSError, ValueError) as error:  # a checkpoint without tokenizer files still exports
        logger.warning("No tokenizer saved with %s: %s could not be loaded (%s).", output, model_id, error)
        return
    tokenizer.save_pretrained(output)
    try:
        write_openvino_tokenizers(tokenizer, output)
    except Exception as error:  # the OpenVINO tokenizer only serves openvino-genai; the export stands without it
        logger.warning("No OpenVINO tokenizer written to %s (%s).", output, error)


def export_speculative(
    model: str, output: Path, draft_model: str = None, weight_format: str = "fp32", eagle_head: str = None
) -> Path:
    """Export a causal LM (and its draft and/or EAGLE head) to OpenVINO, saved as `OVSpeculativeModelForCausalLM`
    loads them."""
    from tqdm.auto import tqdm

    from optimum_dynexec.gguf import checkpoint_for_gguf, is_gguf
    from optimum_dynexec.speculative.modeling import (DRAFT_SUBFOLDER, EXACT_PRECISION_CONFIG,
                                                      OVSpeculativeModelForCausalLM)

    # A .gguf file becomes a transformers checkpoint first, which also gives the tokenizer files saved below.
    model = checkpoint_for_gguf(model) if is_gguf(model) else model
    draft_model = checkpoint_for_gguf(draft_model) if draft_model is not None and is_gguf(draft_model) else draft_model
    steps = tqdm(total=3, desc="export dynexec", unit="step")
    try:
        steps.set_postfix_str("exporting to OpenVINO")
        with model_load_errors({"--model": model, "--draft-model": draft_model, "--eagle-head": eagle_head}):
            # Loaded at f32 only to be saved: a stateless model loaded at bf16 would be saved rounding its KV cache
            # to bf16 inside the graph (`kv_cache.cache_rounded_to_16_bits`); the precision it runs at is chosen
            # when the saved folder is loaded.
            speculative = OVSpeculativeModelForCausalLM.from_pretrained(
                model, export=True, draft_model=draft_model, eagle_head=eagle_head,
                quantization_config=quantization_config_for(weight_format), compile=False,
                ov_config=dict(EXACT_PRECISION_CONFIG),
            )
        steps.update()
        steps.set_postfix_str("saving")
        speculative.save_pretrained(output)
        steps.update()
        steps.set_postfix_str("tokenizers")
        save_tokenizers(model, output)
        if draft_model is not None:
            save_tokenizers(draft_model, output / DRAFT_SUBFOLDER)
        steps.update()
    finally:
        steps.close()  # also on failure, so an error message starts on its own line
    return output


class ExportDynexecCommand(PluginCommand):
    COMMAND = CommandInfo(name="dynexec", help="Export a model with its dynamic-execution parts to OpenVINO.")

    @staticmethod
    def parse_args(parser):
        parser.add_argument("-m", "--model", required=True, help="Model id or directory of the (target) model.")
        parser.add_argument(
            "--task", default=None, choices=["text-generation", "text-classification"],
            help="text-generation (speculative generation) or text-classification (early exit; the model is a "
            "`optimum-cli dynexec train-exits` checkpoint). Default: text-classification when the model folder "
            "holds early_exit_config.json, else text-generation.",
        )
        parser.add_argument("--draft-model", default=None, help="text-generation: draft model id or directory.")
        parser.add_argument("--eagle-head", default=None,
                            help="text-generation: EAGLE head folder (published format, e.g. from train-eagle).")
        parser.add_argument(
            "--weight-format", default="fp32", choices=WEIGHT_FORMATS,
            help="Weight compression applied to every OpenVINO model written (NNCF; default %(default)s).",
        )
        parser.add_argument("output", type=Path, help="Directory to write the exported model to.")

    def run(self):
        args = self.args
        task = args.task
        if task is None:
            checkpoint = Path(args.model).expanduser()
            task = "text-classification" if (checkpoint / "early_exit_config.json").is_file() else "text-generation"
        try:
            # Checked before any heavy import or write: a mistyped path fails at once and leaves no output folder.
            model = resolve_model_argument(args.model, "--model")
            draft_model = resolve_model_argument(args.draft_model, "--draft-model")
            eagle_head = resolve_model_argument(args.eagle_head, "--eagle-head")
            if task == "text-classification":
                if draft_model is not None or eagle_head is not None:
                    raise ModelArgumentError("`--draft-model`/`--eagle-head` are for text-generation; drop them here.")
                if not Path(model).is_dir():
                    raise ModelArgumentError(
                        f"`--model` {args.model!r} is not a local folder: text-classification exports the checkpoint "
                        "folder that `optimum-cli dynexec train-exits` writes."
                    )
                from optimum_dynexec.early_exit import export_early_exit

                export_early_exit(model, args.output, args.weight_format)
            else:
                export_speculative(model, args.output, draft_model, args.weight_format, eagle_head)
        except ModelArgumentError as error:
            # A wrong model option is a usage error: argparse's message and exit status, not a traceback.
            self.parser.error(str(error))
        print(f"Exported to {args.output}")
