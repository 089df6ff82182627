"""`optimum-cli export dynexec` for text generation: the save_pretrained layout, loadable and exact."""

import json
import subprocess
import sys

import pytest
import torch
from optimum.intel import OVModelForCausalLM

from optimum_dynexec import OVSpeculativeModelForCausalLM
from optimum_dynexec.commands.export import quantization_config_for
from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG


def _has_int8_weights(ov_model) -> bool:
    return any(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("u8", "i8")
               for op in ov_model.model.get_ops())


def test_cli_exports_target_and_draft_in_the_save_pretrained_layout(tiny_models, tmp_path):
    output = tmp_path / "exported"
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "dynexec",
               "--model", str(tiny_models.checkpoint("llama")),
               "--draft-model", str(tiny_models.checkpoint("llama-draft")),
               "--weight-format", "int8", str(output)]
    subprocess.run(command, check=True, capture_output=True)

    assert (output / "openvino_model.xml").is_file() and (output / "draft" / "openvino_model.xml").is_file()
    assert json.loads((output / "dynexec_config.json").read_text())["speculative"]["draft_subfolder"] == "draft"
    model = OVSpeculativeModelForCausalLM.from_pretrained(output, ov_config=EXACT_PRECISION_CONFIG)
    assert model.draft_model is not None
    assert _has_int8_weights(model) and _has_int8_weights(model.draft_model)

    plain = OVModelForCausalLM.from_pretrained(output, ov_config=EXACT_PRECISION_CONFIG)
    prompt = torch.tensor([[5, 9, 17, 33, 5, 9, 17]])
    expected = plain.generate(prompt, max_new_tokens=24, do_sample=False)
    assert torch.equal(model.generate(prompt, max_new_tokens=24, do_sample=False), expected)
    assert model.last_decoding_stats.drafted_tokens > 0


def test_cli_rejects_draft_arguments_for_classification(tiny_models, tmp_path):
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "dynexec", "--task",
               "text-classification", "--model", str(tmp_path), "--draft-model", "x", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert "--draft-model" in result.stderr and not (tmp_path / "out").exists()


def test_weight_format_names_its_compression():
    assert quantization_config_for("fp32") is None
    assert quantization_config_for("int8").bits == 8
    assert quantization_config_for("int4").bits == 4
    with pytest.raises(ValueError, match="--weight-format"):
        quantization_config_for("int3")
