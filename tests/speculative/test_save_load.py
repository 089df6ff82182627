"""Saving and loading a target with its draft, and weight compression of both."""

import json

import openvino as ov
import pytest
from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig

from optimum_dynexec.speculative.modeling import DRAFT_SUBFOLDER, DYNEXEC_CONFIG_NAME, OVSpeculativeModelForCausalLM

from helpers.tiny_causal_lm import (TEST_OV_CONFIG, load_plain, load_speculative, new_tokens, random_prompt,
                                    repetitive_prompt, shared_plain)


MAX_NEW_TOKENS = 24
KEEP_DRAFTING = dict(num_assistant_tokens=4, num_assistant_tokens_schedule="constant", assistant_confidence_threshold=0.0)


@pytest.fixture(scope="module")
def llama(tiny_models):
    target_dir = tiny_models.ir("llama")
    return target_dir, tiny_models.ir("llama-draft"), shared_plain(target_dir)


def _files(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def _no_staging_left(directory) -> bool:
    return not any(entry.name.startswith(".") for entry in directory.iterdir())


def test_save_pretrained_writes_target_draft_and_config(llama, tmp_path):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    model.save_pretrained(tmp_path / "saved")
    plain.save_pretrained(tmp_path / "plain")
    load_plain(draft_dir).save_pretrained(tmp_path / "draft")

    saved = tmp_path / "saved"
    assert {entry.name for entry in saved.iterdir()} == set(_files(tmp_path / "plain")) | {DRAFT_SUBFOLDER,
                                                                                            DYNEXEC_CONFIG_NAME}
    saved_files = _files(saved)
    for name, content in _files(tmp_path / "plain").items():  # the target's usual files, unchanged
        if name != "generation_config.json":
            assert saved_files[name] == content, name
    assert _files(saved / DRAFT_SUBFOLDER).keys() == _files(tmp_path / "draft").keys()
    assert (saved / DRAFT_SUBFOLDER / "openvino_model.bin").read_bytes() == (draft_dir / "openvino_model.bin").read_bytes()
    assert json.loads((saved / DYNEXEC_CONFIG_NAME).read_text())["speculative"]["draft_subfolder"] == DRAFT_SUBFOLDER


def test_from_pretrained_restores_target_and_draft(llama, tmp_path):
    target_dir, draft_dir, plain = llama
    load_speculative(target_dir, draft_model=draft_dir).save_pretrained(tmp_path)

    reloaded = load_speculative(tmp_path)
    assert reloaded.draft_model is not None
    for prompt in (random_prompt(50, 8), random_prompt(51, 13)):
        expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
        assert new_tokens(reloaded, prompt, max_new_tokens=MAX_NEW_TOKENS, **KEEP_DRAFTING) == expected
        assert reloaded.last_decoding_stats.drafted_tokens > 0

    # A plain OVModelForCausalLM loads the target alone.
    target_only = load_plain(tmp_path)
    assert type(target_only) is OVModelForCausalLM
    prompt = random_prompt(52, 9)
    assert new_tokens(target_only, prompt, max_new_tokens=MAX_NEW_TOKENS) == new_tokens(
        plain, prompt, max_new_tokens=MAX_NEW_TOKENS)


def test_saving_again_replaces_cleanly(llama, tiny_models, tmp_path):
    target_dir, draft_dir, _ = llama
    load_speculative(target_dir, draft_model=draft_dir).save_pretrained(tmp_path)

    # Another draft replaces the first one.
    other_draft = tiny_models.ir("qwen2")
    load_speculative(target_dir, draft_model=other_draft).save_pretrained(tmp_path)
    assert (tmp_path / DRAFT_SUBFOLDER / "openvino_model.bin").read_bytes() == (
        other_draft / "openvino_model.bin").read_bytes()
    assert load_speculative(tmp_path).draft_model.config.model_type == "qwen2"

    # No draft: the saved folder must not keep (and load) the old one.
    load_speculative(target_dir).save_pretrained(tmp_path)
    assert not (tmp_path / DRAFT_SUBFOLDER).exists()
    assert load_speculative(tmp_path).draft_model is None
    assert json.loads((tmp_path / DYNEXEC_CONFIG_NAME).read_text())["speculative"]["draft_subfolder"] is None
    assert _no_staging_left(tmp_path)


def test_failed_save_leaves_nothing_partial(llama, tiny_models, tmp_path, monkeypatch):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model.draft_model, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()  # a folder the failed save created is removed again

    # Over an earlier complete save, a failed save leaves the earlier one whole.
    earlier = load_speculative(target_dir, draft_model=tiny_models.ir("qwen2"))
    earlier.save_pretrained(tmp_path / "existing")
    before = _files(tmp_path / "existing"), _files(tmp_path / "existing" / DRAFT_SUBFOLDER)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "existing")
    assert (_files(tmp_path / "existing"), _files(tmp_path / "existing" / DRAFT_SUBFOLDER)) == before
    assert _no_staging_left(tmp_path / "existing")
    assert load_speculative(tmp_path / "existing").draft_model is not None


def test_full_disk_is_said_plainly_and_changes_nothing(llama, tmp_path, monkeypatch):
    """OpenVINO reports a full disk as `basic_ios::clear: iostream error`; the save says where and what to do."""
    target_dir, draft_dir, _ = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    model.save_pretrained(tmp_path / "existing")
    before = _files(tmp_path / "existing")
    def full_disk(*args, **kwargs):
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1340: basic_ios::clear: iostream error")

    monkeypatch.setattr(ov, "save_model", full_disk)  # optimum-intel calls `openvino.save_model`
    for destination in (tmp_path / "existing", tmp_path / "fresh"):
        with pytest.raises(OSError, match=f"Could not write {destination}.*iostream error.*free space"):
            model.save_pretrained(destination)
    assert _files(tmp_path / "existing") == before and _no_staging_left(tmp_path / "existing")
    assert not (tmp_path / "fresh").exists()


_KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
from optimum_dynexec.utils.io import atomic_save_into
with atomic_save_into(Path(sys.argv[1])) as staging:
    (staging / "openvino_model.xml").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_save_killed_half_way_is_cleaned_up_by_the_next_save_or_load(llama, tmp_path):
    import subprocess
    import sys

    target_dir, draft_dir, _ = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    for then in ("save", "load"):
        destination = tmp_path / then
        model.save_pretrained(destination)
        before = _files(destination)
        killed = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(destination)])
        assert killed.returncode == -9
        assert not _no_staging_left(destination)  # what the killed save left behind
        assert _files(destination) == before  # and the earlier save is whole
        if then == "save":
            model.save_pretrained(destination)
        else:
            assert load_speculative(destination).draft_model is not None
        assert _no_staging_left(destination) and _files(destination) == before


# ---------------------------------------------------------------------------------------------- quantization

def _int8_weights(ov_model: ov.Model) -> int:
    return sum(
        1 for op in ov_model.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.u8, ov.Type.i8)
    )


@pytest.mark.parametrize("compression", ["quantization_config", "load_in_8bit"])
def test_8bit_weights_apply_to_target_and_draft(llama, compression):
    target_dir, draft_dir, _ = llama
    arguments = dict(quantization_config=OVWeightQuantizationConfig(bits=8)) if compression == "quantization_config" \
        else dict(load_in_8bit=True)
    model = load_speculative(target_dir, draft_model=draft_dir, **arguments)
    uncompressed = load_speculative(target_dir, draft_model=draft_dir)
    assert _int8_weights(uncompressed.model) == 0 and _int8_weights(uncompressed.draft_model.model) == 0
    assert _int8_weights(model.model) > 0
    assert _int8_weights(model.draft_model.model) > 0

    plain = load_plain(target_dir, **arguments)
    assert _int8_weights(plain.model) == _int8_weights(model.model)
    stats = []
    for prompt in (random_prompt(53, 7), repetitive_prompt(shared_plain(target_dir), seed=54)):
        expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
        assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, **KEEP_DRAFTING) == expected
        stats.append(model.last_decoding_stats)
        assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, prompt_lookup_num_tokens=6) == expected
        stats.append(model.last_decoding_stats)
    assert sum(s.accepted_tokens for s in stats) > 0


def test_draft_quantization_config_applies_to_the_draft_only(llama):
    target_dir, draft_dir, _ = llama
    model = load_speculative(target_dir, draft_model=draft_dir,
                             draft_quantization_config=OVWeightQuantizationConfig(bits=8))
    assert _int8_weights(model.model) == 0
    assert _int8_weights(model.draft_model.model) > 0


def test_the_draft_inherits_the_ov_config_but_not_its_precision(llama):
    """An `ov_config` asking f32 (for exact output) binds the target; the draft only proposes, so it keeps the device's
    fastest precision, takes the caller's other properties, and obeys `draft_ov_config`."""
    from optimum_dynexec.openvino_cpu import crash_free
    from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG

    target_dir, draft_dir, _ = llama
    # The device default, as the package compiles it: on a CPU with AMX, one thread at bf16 crashes OpenVINO.
    device_default = OVModelForCausalLM.from_pretrained(draft_dir, ov_config=crash_free(TEST_OV_CONFIG, "CPU", True))
    device_default.compile()
    default_precision = device_default.request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")

    def precision_and_threads(compiled_model):
        compiled = compiled_model.request.get_compiled_model()
        return str(compiled.get_property("INFERENCE_PRECISION_HINT")), int(compiled.get_property("INFERENCE_NUM_THREADS"))

    model = OVSpeculativeModelForCausalLM.from_pretrained(target_dir, draft_model=draft_dir,
                                                          ov_config={**TEST_OV_CONFIG, **EXACT_PRECISION_CONFIG})
    model.compile()
    model.draft_model.compile()
    assert precision_and_threads(model) == ("<Type: 'float32'>", 1)
    assert precision_and_threads(model.draft_model) == (str(default_precision), 1)

    forced = load_speculative(target_dir, draft_model=draft_dir, draft_ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    forced.draft_model.compile()
    assert precision_and_threads(forced.draft_model)[0] == "<Type: 'float32'>"
