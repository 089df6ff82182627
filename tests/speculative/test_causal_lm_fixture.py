"""The causal-LM fixture: corpus split, editing documents, and the build/cache contract (at the tiny "test" size)."""

import ast
import json

import numpy as np
import pytest

from lab.fixtures import causal_lm, corpus


@pytest.fixture(scope="module")
def source_files():
    return corpus.list_source_files()


def test_held_out_split_is_disjoint_deterministic_and_small(source_files):
    training, held_out = corpus.split_source_files(source_files)
    training_paths = {f.relative_path for f in training}
    held_out_paths = {f.relative_path for f in held_out}
    assert not training_paths & held_out_paths
    assert len(training_paths) + len(held_out_paths) == len(source_files)
    assert 0.01 < len(held_out) / len(source_files) < 0.06
    # Deterministic: decided by the path alone, whatever order or subset the files come in.
    again_training, again_held_out = corpus.split_source_files(list(reversed(source_files[::2])))
    assert {f.relative_path for f in again_held_out} == held_out_paths & {f.relative_path for f in source_files[::2]}
    assert all(not corpus.is_held_out(path) for path in training_paths)


def test_source_listing_is_sorted_and_excludes_site_packages(source_files):
    paths = [f.relative_path for f in source_files]
    assert paths == sorted(paths)
    assert not any("site-packages" in path for path in paths)


class _RenameNames(ast.NodeTransformer):
    def __init__(self, old_name, new_name):
        self.old_name, self.new_name = old_name, new_name

    def visit_Name(self, node):
        if node.id == self.old_name:
            node.id = self.new_name
        return node

    def visit_arg(self, node):
        if node.arg == self.old_name:
            node.arg = self.new_name
        return node


def test_editing_documents_are_the_snippet_with_one_variable_renamed(source_files):
    training, _ = corpus.split_source_files(source_files)
    examples = corpus.editing_documents(training[:60], token_fraction=0.2)
    assert len(examples) >= 10
    for example in examples:
        expected_tree = _RenameNames(example.old_name, example.new_name).visit(ast.parse(example.original))
        assert ast.dump(ast.parse(example.edited)) == ast.dump(expected_tree)
        assert example.edited != example.original
        assert example.new_name not in set(ast.dump(ast.parse(example.original)).split("'"))
        assert example.document == f"{example.original}\n# --- after renaming {example.old_name} to {example.new_name} ---\n{example.edited}"
        assert example.relative_path in {f.relative_path for f in training}


def test_rename_leaves_attributes_strings_and_keywords_alone():
    snippet = "def f(count):\n    total = count + obj.count\n    return g(count=count, label='count')  # count"
    renamed = corpus.rename_identifier(snippet, "count", "value")
    assert renamed == "def f(value):\n    total = value + obj.count\n    return g(count=value, label='count')  # count"


def test_editing_fraction_is_close_to_requested(source_files):
    training, _ = corpus.split_source_files(source_files)
    subset = training[:200]
    examples = corpus.editing_documents(subset, token_fraction=0.1)
    editing_characters = sum(len(e.document) for e in examples)
    source_characters = sum(len(f.text) for f in subset)
    assert 0.08 < editing_characters / (editing_characters + source_characters) < 0.14


def test_editing_fraction_rejects_bad_value(source_files):
    with pytest.raises(ValueError, match="token_fraction"):
        corpus.editing_documents(source_files[:3], token_fraction=1.5)


def test_unknown_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="size="):
        causal_lm.build_causal_lm_fixture("huge", progress=False, cache_dir=tmp_path)


@pytest.fixture(scope="module")
def tiny_fixture(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("fixture-cache")
    return cache_dir, causal_lm.build_causal_lm_fixture("test", progress=False, cache_dir=cache_dir)


def test_tiny_build_gives_loadable_folders_with_a_shared_tokenizer(tiny_fixture):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, fixture = tiny_fixture
    assert not fixture.from_cache
    target = AutoModelForCausalLM.from_pretrained(fixture.target_dir)
    draft = AutoModelForCausalLM.from_pretrained(fixture.draft_dir)
    target_tokenizer = AutoTokenizer.from_pretrained(fixture.target_dir)
    draft_tokenizer = AutoTokenizer.from_pretrained(fixture.draft_dir)
    assert target.config.vocab_size == draft.config.vocab_size == len(target_tokenizer)
    assert target_tokenizer.get_vocab() == draft_tokenizer.get_vocab()
    assert target_tokenizer.eos_token_id == target.config.eos_token_id == target.generation_config.eos_token_id
    assert target_tokenizer.pad_token_id is not None and target_tokenizer.pad_token_id != target_tokenizer.eos_token_id
    assert sum(p.numel() for p in target.parameters()) > sum(p.numel() for p in draft.parameters())
    code = "def add(a, b):\n    return a + b\n"
    assert target_tokenizer.decode(target_tokenizer.encode(code, add_special_tokens=False)) == code

    quality = json.loads((fixture.path / "quality.json").read_text())
    assert {**quality, "self_distilled_draft": fixture.quality["self_distilled_draft"]} == fixture.quality
    assert 0.0 <= quality["greedy_agreement"] <= 1.0
    assert quality["target_parameters"] == sum(p.numel() for p in target.parameters())


def test_second_call_is_a_cache_hit(tiny_fixture):
    cache_dir, first = tiny_fixture
    weights = first.target_dir / "model.safetensors"
    modified = weights.stat().st_mtime_ns
    second = causal_lm.build_causal_lm_fixture("test", progress=False, cache_dir=cache_dir)
    assert second.from_cache
    assert second.path == first.path
    assert weights.stat().st_mtime_ns == modified


def test_the_draft_is_self_distilled_in_its_own_cache_entry(tiny_fixture):
    from safetensors.numpy import load_file

    _, fixture = tiny_fixture
    stage = causal_lm.DRAFT_SELF_DISTILLATION["test"]
    assert fixture.corpus_draft_dir == fixture.path / "draft"
    assert fixture.draft_dir.parent.name == f"{fixture.path.name}-self-distilled-draft-{causal_lm.self_distillation_key(stage)}"
    summary = json.loads((fixture.draft_dir.parent / causal_lm.SELF_DISTILLATION_FILE).read_text())
    assert fixture.quality["self_distilled_draft"] == summary
    assert summary["pair"] == fixture.path.name and summary["stage"]["windows"] == stage.windows
    before = load_file(fixture.corpus_draft_dir / "model.safetensors")
    after = load_file(fixture.draft_dir / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not (before[name] == after[name]).all() for name in before), "the stage did not train the draft"


def test_the_draft_trains_on_the_targets_greedy_continuations(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    from optimum_dynexec.speculative.self_distillation import greedy_continuation

    stage = causal_lm.DRAFT_SELF_DISTILLATION["test"]
    seen = []
    train = causal_lm.train_model

    def recording_train(model, teacher, next_batch, recipe, steps, learning_rate, progress, name):
        def recorded():
            batch = next_batch()
            if name == "draft on the target's text":  # the stage, not the pair's own training
                seen.append(np.asarray(batch).copy())
            return batch
        return train(model, teacher, recorded, recipe, steps, learning_rate, progress, name)

    monkeypatch.setattr(causal_lm, "train_model", recording_train)
    fixture = causal_lm.build_causal_lm_fixture("test", progress=False, cache_dir=tmp_path)
    target = AutoModelForCausalLM.from_pretrained(fixture.target_dir).eval()
    windows = np.concatenate(seen)
    assert windows.shape == (len(windows), stage.prefix_tokens + stage.generated_tokens) and len(windows) >= stage.windows
    prefixes = torch.from_numpy(windows[:, : stage.prefix_tokens].astype(np.int64))
    expected = greedy_continuation(target, prefixes, stage.generated_tokens).numpy()
    np.testing.assert_array_equal(windows, expected)


def test_a_new_stage_recipe_retrains_the_draft_but_not_the_pair(tiny_fixture, monkeypatch):
    cache_dir, first = tiny_fixture
    target_weights = first.target_dir / "model.safetensors"
    modified = target_weights.stat().st_mtime_ns
    stage = causal_lm.DRAFT_SELF_DISTILLATION["test"]
    changed = causal_lm.dataclasses.replace(stage, epochs=stage.epochs * 2)
    monkeypatch.setitem(causal_lm.DRAFT_SELF_DISTILLATION, "test", changed)
    second = causal_lm.build_causal_lm_fixture("test", progress=False, cache_dir=cache_dir)
    assert not second.from_cache
    assert second.path == first.path and target_weights.stat().st_mtime_ns == modified
    assert second.draft_dir != first.draft_dir and first.draft_dir.is_dir()
    assert second.quality["self_distilled_draft"]["training_steps"] == 2 * first.quality["self_distilled_draft"]["training_steps"]


def test_the_benchmark_export_is_keyed_by_the_draft(tmp_path):
    from lab.benchmark.generation import exported_fixture

    stage_entry = tmp_path / "pair-self-distilled-draft-abc"
    (stage_entry / "openvino-fp32").mkdir(parents=True)
    (stage_entry / "openvino-fp32" / "dynexec_config.json").write_text("{}")
    fixture = causal_lm.CausalLMFixture(path=tmp_path / "pair", size="test", target_dir=tmp_path / "pair" / "target",
                                        draft_dir=stage_entry / "draft", tokenizer_dir=tmp_path / "pair" / "tokenizer",
                                        quality={}, corpus_draft_dir=tmp_path / "pair" / "draft")
    assert exported_fixture(fixture) == stage_entry / "openvino-fp32"


def test_recipe_change_changes_the_cache_entry():
    recipe = causal_lm.RECIPES["test"]
    changed = causal_lm.dataclasses.replace(recipe, target_steps=recipe.target_steps + 1)
    assert causal_lm.recipe_key(recipe, "corpus") != causal_lm.recipe_key(changed, "corpus")
    assert causal_lm.recipe_key(recipe, "corpus") != causal_lm.recipe_key(recipe, "other corpus")


def test_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(causal_lm, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        causal_lm.build_causal_lm_fixture("test", progress=False, cache_dir=tmp_path)
    entries = [p for p in (tmp_path / "causal-lm").iterdir() if not p.name.endswith(".lock")]
    assert entries == []


_TERMINATED_BUILD = """
import os, signal, sys
from pathlib import Path
from lab.fixtures import causal_lm

causal_lm.train_model = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` during training
try:
    causal_lm.build_causal_lm_fixture("test", progress=False, cache_dir=Path(sys.argv[1]))
except KeyboardInterrupt:
    sys.exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 2)
sys.exit(1)
"""


def test_terminated_build_cleans_up_its_own_and_abandoned_staging(tmp_path, source_files):
    # In a process of its own: once openvino-genai's speculative pipeline has run in the suite's process (the generation
    # benchmark's tests), a self-sent SIGTERM there crashes the interpreter with a segfault.
    import subprocess
    import sys

    key = causal_lm.recipe_key(causal_lm.RECIPES["test"], corpus.corpus_fingerprint(source_files))
    abandoned = tmp_path / "causal-lm" / f".test-{key}.killed9"  # what `kill -9` during a build leaves
    abandoned.mkdir(parents=True)
    terminated = subprocess.run([sys.executable, "-c", _TERMINATED_BUILD, str(tmp_path)], capture_output=True,
                                text=True)
    assert terminated.returncode == 0, terminated.stderr[-2000:]
    assert [p for p in (tmp_path / "causal-lm").iterdir() if not p.name.endswith(".lock")] == []


def test_evaluation_prompts_come_from_held_out_files(tiny_fixture, source_files):
    _, fixture = tiny_fixture
    _, held_out = corpus.split_source_files(source_files)
    held_out_text = "\n".join(f.text for f in held_out)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    completions = causal_lm.evaluation_prompts(fixture, "completion", 3, seed=1)
    assert completions == causal_lm.evaluation_prompts(fixture, "completion", 3, seed=1)
    for prompt in completions:
        assert prompt.endswith("\n") and prompt in held_out_text
        assert 100 <= len(tokenizer.encode(prompt, add_special_tokens=False)) <= 420  # lines re-tokenize jointly

    edits = causal_lm.evaluation_edit_examples(fixture, 3)
    assert [e.prompt for e in edits] == causal_lm.evaluation_prompts(fixture, "editing", 3)
    assert all(corpus.is_held_out(e.relative_path) for e in edits)
    assert all(e.prompt.endswith(f"# --- after renaming {e.old_name} to {e.new_name} ---\n") for e in edits)

    random_prompts = causal_lm.evaluation_prompts(fixture, "random", 2, seed=3)
    assert random_prompts == causal_lm.evaluation_prompts(fixture, "random", 2, seed=3)
    assert random_prompts != causal_lm.evaluation_prompts(fixture, "random", 2, seed=4)

    with pytest.raises(ValueError, match="task="):
        causal_lm.evaluation_prompts(fixture, "translation", 1)


def test_warmup_cosine_rises_linearly_then_decays_to_its_floor():
    from optimum_dynexec.learning_rate import warmup_cosine

    rates = [warmup_cosine(step, 100, peak=2.0, warmup_steps=10, floor=0.1) for step in range(101)]
    assert rates[:10] == pytest.approx([2.0 * (step + 1) / 10 for step in range(10)])
    assert rates[10] == pytest.approx(2.0)
    assert all(later <= earlier for earlier, later in zip(rates[10:], rates[11:]))
    assert rates[100] == pytest.approx(0.2)  # floor * peak at the last step
    assert warmup_cosine(0, 100, peak=1.0, warmup_steps=0, floor=0.0) == pytest.approx(1.0)  # no warm-up


def test_self_distilling_another_draft_returns_its_summary_with_the_callers_notes(tiny_fixture, tmp_path):
    _, fixture = tiny_fixture
    stage = causal_lm.DRAFT_SELF_DISTILLATION["test"]
    summary = causal_lm.self_distil_draft_into(tmp_path, fixture, causal_lm.RECIPES["test"], stage, progress=False,
                                               notes={"starting_draft": "the fixture's"})
    assert summary == json.loads((tmp_path / causal_lm.SELF_DISTILLATION_FILE).read_text())
    assert summary["starting_draft"] == "the fixture's" and summary["pair"] == fixture.path.name
    assert (tmp_path / "draft" / "model.safetensors").is_file()
