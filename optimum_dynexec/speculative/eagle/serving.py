"""EAGLE-3 heads for openvino-genai and OpenVINO Model Server: the draft IR their EAGLE-3 mode loads.

openvino-genai (`LLMPipeline(target, "CPU", draft_model=openvino_genai.draft_model(folder, "CPU"))`, and the continuous
batching pipeline OpenVINO Model Server runs) loads an EAGLE-3 head as the OpenVINO IR optimum-intel exports from the
published layout: `openvino_model.xml` with a `hidden_states` input (three target layers side by side), `logits` over
the draft vocabulary and a `d2t` output, marked `eagle3_mode` in its rt_info. At load, genai moves the head's `fc`
into the target (as `graphs.target_with_features` does here) and gives the draft the target's embedding.

The target layers go into the IR's rt_info as `hidden_layers_list`: genai otherwise picks 2, n/2 and n-3 itself (and
refuses targets of fewer than 10 layers), which would feed a head trained on other layers the wrong features.
"""

import tempfile
from pathlib import Path
from typing import Sequence, Union

GENAI_DRAFT_IR = "openvino_model.xml"


def export_genai_draft(head_folder: Union[str, Path], output_folder: Union[str, Path],
                       feature_layers: Sequence[int]) -> None:
    """Export the published-layout EAGLE-3 head in `head_folder` to the draft IR openvino-genai and OVMS load, as
    `output_folder/openvino_model.xml` (+ `.bin`); other files in `output_folder` are left alone.

    optimum-intel's exporter recognises the layout (`LlamaForCausalLMEagle3`) only through transformers' remote-code
    loader, hence `trust_remote_code=True`: the code it runs is optimum-intel's own EAGLE-3 module, not the folder's.
    """
    import openvino as ov
    from optimum.exporters.openvino import main_export

    output_folder = Path(output_folder)
    with tempfile.TemporaryDirectory(prefix="dynexec-genai-draft-") as work:
        main_export(model_name_or_path=str(head_folder), output=work, task="text-generation-with-past",
                    trust_remote_code=True)
        model = ov.Core().read_model(Path(work) / GENAI_DRAFT_IR)
        if not model.has_rt_info("eagle3_mode"):
            raise RuntimeError(f"optimum-intel exported {head_folder} without `eagle3_mode`: openvino-genai would run "
                               "it as an ordinary draft model. Its config.json must name the `LlamaForCausalLMEagle3` "
                               "architecture.")
        model.set_rt_info([int(layer) for layer in feature_layers], "hidden_layers_list")
        ov.save_model(model, output_folder / GENAI_DRAFT_IR)
