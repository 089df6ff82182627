"""The benchmark for any model: built-in prompt sets, `benchmark_model` on a tiny exported pair, and the CLI."""

import argparse
import json
import shutil
import subprocess
import sys

import pytest
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from helpers.tiny_causal_lm import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from lab.benchmark import generation, prompt_sets
from lab.benchmark.prompt_sets import BenchmarkPrompt, encode_prompt
from optimum_dynexec.commands import benchmark as command
from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG

# Exact greedy agreement needs both sides at f32 (at bf16 a token verified in a batch may flip a near-tie).
F32 = dict(EXACT_PRECISION_CONFIG)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable ASCII character (plus newline and tab), padded to the tiny models' vocabulary; a BPE
    without merges, which openvino_tokenizers converts for openvino-genai."""
    vocabulary = {"<pad>": PAD_ID, "<s>": BOS_ID, "</s>": EOS_ID}
    for character in [chr(code) for code in range(32, 127)] + ["\n", "\t"]:
        vocabulary[character] = len(vocabulary)
    while len(vocabulary) < VOCAB_SIZE:
        vocabulary[f"<unused{len(vocabulary)}>"] = len(vocabulary)
    tokenizer = Tokenizer(models.BPE(vocabulary, merges=[], unk_token="<pad>"))
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<pad>", model_max_length=512)


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


@pytest.fixture(scope="module")
def tiny_pair(tiny_models, tmp_path_factory):
    """The tiny llama IR with a Hugging Face tokenizer but no OpenVINO tokenizer IRs (the benchmark converts them for
    openvino-genai itself), and its draft IR with no tokenizer at all."""
    root = tmp_path_factory.mktemp("benchmark")
    target, draft = root / "llama", root / "llama-draft"
    shutil.copytree(tiny_models.ir("llama"), target)
    shutil.copytree(tiny_models.ir("llama-draft"), draft)
    char_tokenizer().save_pretrained(target)
    return target, draft


# --------------------------------------------------------------------------------------------------- prompt sets


def test_builtin_prompts_are_deterministic_and_of_the_requested_kinds_and_sizes(tokenizer):
    prompts = prompt_sets.builtin_prompts(prompt_sets.BUILTIN_KINDS, 4, tokenizer, "test", seed=0)
    assert prompts == prompt_sets.builtin_prompts(prompt_sets.BUILTIN_KINDS, 4, tokenizer, "test", seed=0)
    assert list(prompts) == ["chat", "grounded", "random"]
    assert all(len(items) == 4 and all(prompt.kind == kind for prompt in items) for kind, items in prompts.items())

    assert all(prompt.text in prompt_sets.CHAT_QUESTIONS for prompt in prompts["chat"])
    assert [prompt.task for prompt in prompts["grounded"]] == list(prompt_sets.GROUNDED_TASKS)
    for prompt in prompts["grounded"]:
        assert 200 <= len(encode_prompt(prompt, tokenizer)) <= 500, prompt.source
    spelling = next(prompt for prompt in prompts["grounded"] if prompt.task == "fix_spelling")
    assert spelling.text.startswith("Fix the spelling")
    ordinary = set(prompt_sets.ordinary_token_ids(tokenizer))
    for prompt in prompts["random"]:
        assert len(prompt.token_ids) == prompt_sets.RANDOM_PROMPT_TOKENS and set(prompt.token_ids) <= ordinary
        assert encode_prompt(prompt, tokenizer) == list(prompt.token_ids)  # fed as ids, no template

    other_seed = prompt_sets.builtin_prompts(("chat", "random"), 4, tokenizer, "test", seed=1)
    assert other_seed["chat"] != prompts["chat"] and other_seed["random"] != prompts["random"]


def test_dev_and_test_splits_are_disjoint(tokenizer):
    dev_questions = {question for question in prompt_sets.CHAT_QUESTIONS if prompt_sets.split_of(question) == "dev"}
    test_questions = set(prompt_sets.CHAT_QUESTIONS) - dev_questions
    assert len(dev_questions) >= 16 and len(test_questions) >= 16
    assert {p.text for p in prompt_sets.chat_prompts(len(dev_questions), "dev")} == dev_questions
    assert {p.text for p in prompt_sets.chat_prompts(len(test_questions), "test")} == test_questions

    def source_file(prompt):  # "stdlib:json/decoder.py:JSONDecoder.decode" -> "stdlib:json/decoder.py"
        kind, path = prompt.source.split(":", 2)[:2]
        return f"{kind.replace('stdlib-docstring', 'stdlib')}:{path}"

    grounded = {split: prompt_sets.grounded_prompts(4, tokenizer, split) for split in prompt_sets.SPLITS}
    assert not {source_file(p) for p in grounded["dev"]} & {source_file(p) for p in grounded["test"]}
    assert not {p.text for p in grounded["dev"]} & {p.text for p in grounded["test"]}
    random_ids = {split: prompt_sets.random_prompts(3, tokenizer, split) for split in prompt_sets.SPLITS}
    assert not {p.token_ids for p in random_ids["dev"]} & {p.token_ids for p in random_ids["test"]}
    with pytest.raises(ValueError, match="split="):
        prompt_sets.chat_prompts(2, "train")
    with pytest.raises(ValueError, match="Only .* chat questions"):
        prompt_sets.chat_prompts(len(prompt_sets.CHAT_QUESTIONS), "test")


def test_typos_are_deterministic():
    text = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software. " * 3
    with_typos, count = prompt_sets.add_typos(text, "license:MIT")
    assert (with_typos, count) == prompt_sets.add_typos(text, "license:MIT")
    assert count >= 3 and with_typos != text
    assert len(with_typos.split()) == len(text.split())  # words misspelled, none added or removed


def test_chat_prompts_use_the_chat_template(tokenizer):
    templated = char_tokenizer()
    templated.chat_template = ("{% for m in messages %}<{{ m['content'] }}>{% endfor %}"
                               "{% if add_generation_prompt %}!{% endif %}")
    prompt = BenchmarkPrompt("chat", "Hi")
    assert encode_prompt(prompt, templated) == templated("<Hi>!", add_special_tokens=False)["input_ids"]
    assert encode_prompt(BenchmarkPrompt("custom", "Hi", raw=True), templated) == templated("Hi")["input_ids"]


def test_prompts_file(tmp_path):
    lines = tmp_path / "prompts.txt"
    lines.write_text("first question\n\nsecond question\n")
    assert [p.text for p in prompt_sets.read_prompts_file(lines)["custom"]] == ["first question", "second question"]

    records = tmp_path / "prompts.jsonl"
    records.write_text(json.dumps({"prompt": "copy this", "kind": "grounded"}) + "\n"
                       + json.dumps({"prompt": "hello", "raw": True}) + "\n"
                       + json.dumps({"prompt": "copy that", "kind": "grounded"}) + "\n")
    prompts = prompt_sets.read_prompts_file(records)
    assert {kind: [p.text for p in items] for kind, items in prompts.items()} == {
        "grounded": ["copy this", "copy that"], "custom": ["hello"]}
    assert prompts["custom"][0].raw
    assert list(prompt_sets.read_prompts_file(records, kinds=["grounded"], count=1)) == ["grounded"]
    assert len(prompt_sets.read_prompts_file(records, kinds=["grounded"], count=1)["grounded"]) == 1

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no prompts"):
        prompt_sets.read_prompts_file(empty)
    with pytest.raises(ValueError, match="does not exist"):
        prompt_sets.read_prompts_file(tmp_path / "missing.txt")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        prompt_sets.read_prompts_file(broken)
    with pytest.raises(ValueError, match="no prompts of kind 'chat'"):
        prompt_sets.read_prompts_file(records, kinds=["chat"])


# --------------------------------------------------------------------------------------------------- benchmark_model


def test_benchmark_model_runs_every_mode_against_plain(tiny_pair, tmp_path):
    target, draft = tiny_pair
    output = tmp_path / "out" / "results.json"
    results, path = generation.benchmark_model(
        target, draft, max_new_tokens=8, repeats=2, prompts_per_kind=2, ov_config=F32, output=output, progress=False)

    assert path == output
    expected_modes = ["plain", "genai_plain", "genai_prompt_lookup", "genai_draft", "prompt_lookup", "draft"]
    for kind in prompt_sets.BUILTIN_KINDS:
        rows = {result.mode: result for result in results if result.kind == kind}
        assert list(rows) == expected_modes
        plain = rows["plain"]
        assert plain.speedup == 1.0 and plain.agreement is None
        for mode, row in rows.items():
            assert row.prompts == 2 and row.new_tokens == 2 * 8 and len(row.seconds_per_repeat) == 2
            assert row.speedup == pytest.approx(row.tokens_per_second / plain.tokens_per_second)
            if mode != "plain":
                assert row.agreement is not None and row.common_prefix is not None
        for mode in ("prompt_lookup", "draft"):  # ours, greedy at f32: token-identical to plain
            assert rows[mode].agreement == 1.0 and rows[mode].common_prefix == 1.0, (kind, mode)
            assert rows[mode].identical_to_plain == "2/2"
            assert rows[mode].tokens_per_target_call >= 1.0
    assert not (target / "openvino_tokenizer.xml").exists(), "the user's folder is left as it was"

    payload = json.loads(output.read_text())
    assert [entry["mode"] for entry in payload["results"]] == [result.mode for result in results]
    context = payload["context"]
    assert context["ov_config"] == F32 and context["max_new_tokens"] == 8 and context["stops_at_eos"] is True
    assert context["split"] == "test" and context["prompts_per_kind"] == {"chat": 2, "grounded": 2, "random": 2}
    assert "eagle" in context["skipped_modes"] and context["draft_folder"] == str(draft)
    assert len(payload["prompts"]) == 6
    assert all(1 <= len(entry["output_ids"]) <= 8 for prompt in payload["prompts"] for entry in prompt["modes"].values())
    assert sorted(p.name for p in output.parent.iterdir()) == ["results.json"]  # no temporary file left
    assert "genai_draft" in generation.format_table(results)


def test_benchmark_model_takes_given_prompts_and_a_subset_of_modes(tiny_pair, tmp_path):
    target, _ = tiny_pair
    prompts = {"mine": ["def f(x):\n    return x\n\ndef f(x):\n", [5, 6, 7, 5, 6, 7, 5, 6]]}
    results, path = generation.benchmark_model(target, prompts=prompts, modes=["prompt_lookup"], max_new_tokens=4,
                                               repeats=1, ov_config=F32, output=tmp_path / "r.json", progress=False)
    assert [(r.kind, r.mode) for r in results] == [("mine", "plain"), ("mine", "prompt_lookup")]
    assert results[1].agreement == 1.0
    context = json.loads(path.read_text())["context"]
    assert context["skipped_modes"]["draft"] == "no draft model"
    with pytest.raises(ValueError, match="Unknown modes"):
        generation.benchmark_model(target, modes=["fast"])
    with pytest.raises(ValueError, match="`repeats` must be a positive integer"):
        generation.benchmark_model(target, repeats=0)


def test_resolve_model_routes_every_kind_of_input(tmp_path, monkeypatch):
    exported = []
    monkeypatch.setattr(generation, "export_checkpoint", lambda checkpoint, progress=True: exported.append(checkpoint)
                        or tmp_path / "exported")
    import optimum_dynexec.gguf as gguf

    monkeypatch.setattr(gguf, "checkpoint_for_gguf", lambda path, progress=True: tmp_path / "from-gguf")
    ir = tmp_path / "ir"
    ir.mkdir()
    (ir / "openvino_model.xml").write_text("<net/>")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF" + bytes(16))
    assert generation.resolve_model(ir) == ir
    assert generation.resolve_model(checkpoint) == tmp_path / "exported"
    assert generation.resolve_model(model_file) == tmp_path / "exported"
    assert exported == [checkpoint, tmp_path / "from-gguf"]
    (tmp_path / "notes.txt").write_text("hello")
    for bad, message in ((tmp_path / "missing", "does not exist"), (tmp_path / "notes.txt", "not a GGUF model"),
                         (tmp_path, "neither openvino_model.xml")):
        with pytest.raises(ValueError, match=message):
            generation.resolve_model(bad)


# --------------------------------------------------------------------------------------------------- the CLI


def _parse(*argv):
    parser = argparse.ArgumentParser()
    command.BenchmarkCommand.parse_args(parser)
    return parser.parse_args(list(argv))


def test_cli_refuses_bad_values_before_loading_anything(tmp_path, capsys):
    for argv in (["--repeats", "0"], ["--max-new-tokens", "-1"], ["--prompts-per-kind", "x"], ["--ov-config", "{"],
                 ["--ov-config", "[1]"]):
        with pytest.raises(SystemExit):
            _parse(*argv)
        error = capsys.readouterr().err
        assert "must be" in error or "not valid JSON" in error, error
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        (["--model", str(tmp_path / "missing")], "does not exist"),
        (["--model", str(tmp_path), "--prompts", str(empty)], "neither openvino_model.xml"),
        (["--draft-model", str(empty)], "not a GGUF model"),
        (["--prompts", str(empty)], "holds no prompts"),
        (["--kinds", "chat", "poems"], "the built-in kinds are"),
        (["--fixture", "quick", "--model", str(tmp_path)], "drop --model"),
    ]
    for argv, message in cases:
        with pytest.raises(ValueError, match=message):
            command.check_arguments(_parse(*argv))
    assert _parse().model == "real" and _parse().ov_config is None  # defaults: the real model, every side at defaults


def test_cli_constants_follow_the_library():
    assert command.MODES == generation.MODES
    assert command.BUILTIN_KINDS == prompt_sets.BUILTIN_KINDS
    assert command.FIXTURE_KINDS == generation.FIXTURE_KINDS
    assert command.REAL_MODEL == generation.REAL_MODEL
    assert command.REAL_MODEL_EAGLE3 == generation.REAL_MODEL_EAGLE3
    assert command.DEFAULT_PROMPTS_PER_KIND == generation.DEFAULT_PROMPTS_PER_KIND
    assert _parse().prompt_lookup_tokens == generation.PROMPT_LOOKUP_TOKENS


def test_cli_end_to_end(tiny_pair, tmp_path):
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    # This time the folders hold the OpenVINO tokenizer IRs, as `optimum-cli export dynexec` writes them.
    target, draft = tmp_path / "llama", tmp_path / "llama-draft"
    shutil.copytree(tiny_pair[0], target)
    shutil.copytree(tiny_pair[1], draft)
    ov_tokenizer, ov_detokenizer = convert_tokenizer(char_tokenizer(), with_detokenizer=True)
    for folder in (target, draft):
        ov.save_model(ov_tokenizer, folder / "openvino_tokenizer.xml")
        ov.save_model(ov_detokenizer, folder / "openvino_detokenizer.xml")
    output = tmp_path / "cli.json"
    argv = ["optimum-cli", "dynexec", "benchmark", "--model", str(target), "--draft-model", str(draft), "--repeats",
            "1", "--prompts-per-kind", "2", "--max-new-tokens", "8", "--ov-config", json.dumps(F32), "--output",
            str(output)]
    # What the console script `optimum-cli` runs.
    code = f"import sys; sys.argv = {argv!r}; from optimum.commands.optimum_cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kind" in result.stdout and "vs plain" in result.stdout and "common prefix" in result.stdout
    for mode in ("plain", "genai_plain", "genai_prompt_lookup", "genai_draft", "prompt_lookup", "draft"):
        assert f" {mode} " in result.stdout
    assert f"results written to {output}" in result.stdout
    payload = json.loads(output.read_text())
    assert payload["context"]["openvino_folder"] == str(target) and len(payload["results"]) == 3 * 6


def test_a_checkpoint_is_exported_once_with_its_tokenizers(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMUM_DYNEXEC_CACHE", str(tmp_path / "cache"))
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_models.checkpoint("llama"), checkpoint)
    char_tokenizer().save_pretrained(checkpoint)
    results, path = generation.benchmark_model(checkpoint, prompts={"mine": [[5, 6, 7, 8, 5, 6, 7]]},
                                               modes=["genai_plain"], max_new_tokens=4, repeats=1, ov_config=F32,
                                               output=tmp_path / "r.json", progress=False)
    assert [r.mode for r in results] == ["plain", "genai_plain"] and results[1].agreement == 1.0
    exported = generation.resolve_model(checkpoint)
    assert json.loads(path.read_text())["context"]["openvino_folder"] == str(exported)
    assert exported.parent == tmp_path / "cache" / "benchmark-exports"
    assert (exported / "openvino_model.xml").is_file() and (exported / "openvino_tokenizer.xml").is_file()
