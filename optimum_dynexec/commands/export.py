"""`optimum-cli export dynexec`: export a model with its dynamic-execution parts, in the `save_pretrained` layout."""

import logging
from pathlib import Path

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo


logger = logging.getLogger(__name__)

WEIGHT_FORMATS = ("fp32", "int8", "int4")


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
        import openvino as ov
        from openvino_tokenizers import convert_tokenizer

        ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
        ov.save_model(ov_tokenizer, output / "openvino_tokenizer.xml")
        ov.save_model(ov_detokenizer, output / "openvino_detokenizer.xml")
    except Exception as error:  # the OpenVINO tokenizer only serves openvino-genai; the export stands without it
        logger.warning("No OpenVINO tokenizer written to %s (%s).", output, error)


def export_speculative(
    model: str, output: Path, draft_model: str = None, weight_format: str = "fp32", eagle_head: str = None
) -> Path:
    """Export a causal LM (and its draft and/or EAGLE head) to OpenVINO, saved as `OVSpeculativeModelForCausalLM`
    loads them."""
    from tqdm.auto import tqdm

    from optimum_dynexec.speculative.modeling import DRAFT_SUBFOLDER, OVSpeculativeModelForCausalLM

    steps = tqdm(total=3, desc="export dynexec", unit="step")
    steps.set_postfix_str("exporting to OpenVINO")
    speculative = OVSpeculativeModelForCausalLM.from_pretrained(
        model, export=True, draft_model=draft_model, eagle_head=eagle_head,
        quantization_config=quantization_config_for(weight_format), compile=False,
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
    steps.close()
    return output


class ExportDynexecCommand(BaseOptimumCLICommand):
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
            help="Weight compression applied to every OpenVINO model written (NNCF).",
        )
        parser.add_argument("output", type=Path, help="Directory to write the exported model to.")

    def run(self):
        args = self.args
        task = args.task
        if task is None:
            task = "text-classification" if (Path(args.model) / "early_exit_config.json").is_file() else "text-generation"
        if task == "text-classification":
            if args.draft_model is not None or args.eagle_head is not None:
                raise ValueError("`--draft-model`/`--eagle-head` are for text-generation; drop them here.")
            from optimum_dynexec.early_exit import export_early_exit

            export_early_exit(args.model, args.output, args.weight_format)
        else:
            export_speculative(args.model, args.output, args.draft_model, args.weight_format, args.eagle_head)
        print(f"Exported to {args.output}")
