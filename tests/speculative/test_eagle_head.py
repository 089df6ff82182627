"""The EAGLE head: the published checkpoint format, its torch forward, its OpenVINO export, and training."""

import json
import subprocess
import sys

import numpy as np
import openvino as ov
import pytest
import torch
from helpers.published_eagle_head import write_published_head
from transformers import AutoModelForCausalLM, LlamaConfig

from optimum_dynexec.speculative.eagle import (
    EagleHead,
    eagle_config_from_target,
    export_eagle_head,
    load_eagle_head,
    target_with_features,
)
from optimum_dynexec.speculative.eagle.training import (
    EagleTrainingArguments,
    FeatureStore,
    drafted_features,
    eagle_loss,
    generate_features,
    train_eagle_head,
)
from optimum_dynexec.speculative.kv_cache import TreeDecoderSession, additive_mask, sequence_inputs


@pytest.fixture(scope="module")
def target(tiny_models):
    path = tiny_models.checkpoint("llama")
    return path, AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.mark.parametrize("fmt,with_embeddings,fc_bias,qkv_bias",
                         [("safetensors", False, True, False), ("bin", True, False, False),
                          ("safetensors", False, True, True)])
def test_published_head_loads_and_computes_what_the_original_layout_computes(target, tmp_path, fmt,
                                                                             with_embeddings, fc_bias, qkv_bias):
    _, model = target
    published = write_published_head(model.config, tmp_path / "head", fmt=fmt, with_embeddings=with_embeddings,
                                     fc_bias=fc_bias, qkv_bias=qkv_bias)
    head = load_eagle_head(tmp_path / "head", model)
    assert not head.has_input_layernorm and (head.fc.bias is not None) == fc_bias
    assert torch.equal(head.lm_head.weight, model.lm_head.weight)
    expected_embeddings = published.embed_tokens.weight if with_embeddings else model.get_input_embeddings().weight
    assert torch.equal(head.embed_tokens.weight, expected_embeddings)

    tokens = torch.randint(3, model.config.vocab_size, (1, 12))
    features = torch.randn(1, 12, model.config.hidden_size)
    with torch.no_grad():
        expected_hidden, expected_logits = published.reference_forward(
            expected_embeddings[tokens], features, model.lm_head.weight
        )
        mask = torch.from_numpy(additive_mask(np.tri(12, dtype=bool)))
        hidden = head(tokens, features, torch.arange(12)[None], mask)
    assert torch.allclose(hidden, expected_hidden, atol=1e-5)
    assert torch.allclose(head.lm_head(hidden), expected_logits, atol=1e-4)


def test_loader_names_what_is_wrong(target, tmp_path):
    _, model = target
    write_published_head(model.config, tmp_path / "two_layers")
    config = json.loads((tmp_path / "two_layers" / "config.json").read_text())
    config["num_hidden_layers"] = 2
    (tmp_path / "two_layers" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_hidden_layers=2"):
        load_eagle_head(tmp_path / "two_layers", model)

    from safetensors.torch import load_file, save_file

    write_published_head(model.config, tmp_path / "no_fc")
    state = load_file(tmp_path / "no_fc" / "model.safetensors")
    del state["fc.weight"]
    save_file(state, tmp_path / "no_fc" / "model.safetensors")
    with pytest.raises(ValueError, match="fc.weight"):
        load_eagle_head(tmp_path / "no_fc", model)

    wider = LlamaConfig(**{**model.config.to_dict(), "hidden_size": 64, "intermediate_size": 96})
    write_published_head(wider, tmp_path / "wider")
    with pytest.raises(ValueError, match="hidden_size=64"):
        load_eagle_head(tmp_path / "wider", model)
    with pytest.raises(ValueError, match="config.json"):
        load_eagle_head(tmp_path, model)


def _run(compiled, inputs):
    request = compiled.create_infer_request()
    request.infer(inputs)
    outputs = {port.get_any_name(): request.get_tensor(port).data.copy() for port in compiled.outputs}
    return outputs


def test_openvino_head_scores_a_tree_after_a_cache_like_torch(target, tmp_path):
    """The exported (stateful) head after a cache, with a tree mask and a rolled-back draft in its state, equals
    the torch head on each root-to-node sequence."""
    _, model = target
    write_published_head(model.config, tmp_path / "head")
    head = load_eagle_head(tmp_path / "head", model)
    exported = export_eagle_head(head)
    assert len(exported.get_sinks()) == 2 and "tree_mask" in {port.get_any_name() for port in exported.inputs}
    compiled = ov.Core().compile_model(exported, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"})
    session = TreeDecoderSession(compiled.create_infer_request())
    hidden_size = model.config.hidden_size
    rng = np.random.default_rng(0)
    past_tokens = rng.integers(3, 100, 7)
    past_features = rng.normal(size=(7, hidden_size)).astype(np.float32)
    session.run(sequence_inputs(input_ids=past_tokens, features=past_features, position_ids=np.arange(7)))
    # A drafted row that is then rolled back: it stays in the state, masked, and must change nothing.
    session.run(sequence_inputs(input_ids=[99], features=rng.normal(size=(1, hidden_size)), position_ids=[7]))
    session.rollback(7)
    # Two siblings, then a child of the second: rows see the past, their ancestors and themselves.
    tree_tokens = np.array([40, 41, 42])
    tree_features = rng.normal(size=(3, hidden_size)).astype(np.float32)
    visible = np.ones((3, 10), dtype=bool)
    visible[:, 7:] = [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    request = session.run(sequence_inputs(input_ids=tree_tokens, features=tree_features, position_ids=[7, 7, 8]), visible)
    tree = {name: request.get_tensor(name).data.copy() for name in ("logits", "hidden_states")}
    for row, path in enumerate([[0], [1], [1, 2]]):
        tokens = np.concatenate([past_tokens, tree_tokens[path]])
        features = np.concatenate([past_features, tree_features[path]])
        length = len(tokens)
        with torch.no_grad():
            hidden = head(torch.from_numpy(tokens)[None], torch.from_numpy(features)[None],
                          torch.arange(length)[None], torch.from_numpy(additive_mask(np.tri(length, dtype=bool))))
            logits = head.lm_head(hidden)
        assert np.allclose(tree["hidden_states"][0, row], hidden[0, -1].numpy(), atol=1e-4)
        assert np.allclose(tree["logits"][0, row], logits[0, -1].numpy(), atol=1e-3)


def test_rewritten_target_returns_the_features_that_feed_lm_head(tiny_models, target):
    """optimum-intel's exported graph, rewritten: same logits as torch, plus the post-norm features."""
    _, model = target
    rewritten = target_with_features(ov.Core().read_model(tiny_models.ir("llama") / "openvino_model.xml"))
    assert {"tree_mask", "input_ids", "position_ids"} <= {port.get_any_name() for port in rewritten.inputs}
    assert "hidden_states" in {name for port in rewritten.outputs for name in port.get_names()}
    compiled = ov.Core().compile_model(rewritten, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    tokens = torch.randint(3, model.config.vocab_size, (1, 9))
    outputs = _run(compiled, {"input_ids": tokens.numpy(), "position_ids": np.arange(9)[None],
                              "attention_mask": np.ones((1, 9), np.int64), "beam_idx": np.zeros(1, np.int32),
                              "tree_mask": additive_mask(np.tri(9, dtype=bool)), "logits_rows": np.arange(9)})
    with torch.no_grad():
        hidden = model.model(tokens).last_hidden_state
        logits = model.lm_head(hidden)
    assert np.allclose(outputs["hidden_states"], hidden.numpy(), atol=1e-5)
    assert np.allclose(outputs["logits"], logits.numpy(), atol=1e-4)


def test_rewriting_a_graph_without_sdpa_says_what_to_do():
    import openvino.opset13 as opset

    tokens = opset.parameter([1, -1], ov.Type.i64, name="input_ids")
    positions = opset.parameter([1, -1], ov.Type.i64, name="position_ids")
    positions.output(0).get_tensor().set_names({"position_ids"})
    graph = ov.Model([opset.result(opset.convert(tokens, ov.Type.f32))], [tokens, positions])
    with pytest.raises(ValueError, match="`ScaledDotProductAttention` with an explicit mask.*0 such operations.*draft model"):
        target_with_features(graph)
    without_positions = ov.Model([opset.result(opset.convert(tokens, ov.Type.f32))], [tokens])
    with pytest.raises(ValueError, match="explicit `position_ids`"):
        target_with_features(without_positions)


# ---------------------------------------------------------------------------------------------------- training

# `text_target` (a tiny target with a real tokenizer, and its training text) is in tests/speculative/conftest.py:
# test_eagle_decoding.py runs the pipeline on it too.


def test_unrolled_drafting_steps_are_what_the_head_computes_when_it_drafts(target):
    """`drafted_features` step s, row i == the head fed the exact pairs 0..i, then drafting s - 1 more times on its
    own predicted features (one row per call, attending to its cache), as the chain drafter does at inference."""
    from optimum_dynexec.speculative.eagle.training import DraftingCache

    _, model = target
    torch.manual_seed(0)
    head = EagleHead(eagle_config_from_target(model.config)).attach_target(model).eval()
    hidden_size = model.config.hidden_size
    tokens = torch.randint(3, model.config.vocab_size, (2, 10))
    features = torch.randn(2, 10, hidden_size)
    with torch.no_grad():
        steps = drafted_features(head, tokens, features, draft_steps=3)
        assert [tuple(step.shape) for step in steps] == [(2, 9, hidden_size), (2, 8, hidden_size), (2, 7, hidden_size)]
        for row, root in [(0, 0), (1, 3), (0, 6)]:
            cache = DraftingCache()
            count = root + 1
            predicted = head(tokens[row : row + 1, 1 : count + 1], features[row : row + 1, :count],
                             torch.arange(count)[None], additive_mask_torch(np.tri(count, dtype=bool)), cache)[:, -1:]
            assert torch.allclose(steps[0][row, root], predicted[0, 0], atol=1e-5)
            for step in (2, 3):
                position = root + step - 1
                predicted = head(tokens[row : row + 1, root + step : root + step + 1], predicted,
                                 torch.tensor([[position]]), torch.zeros(1, 1, 1, cache.get_seq_length() + 1), cache)
                assert torch.allclose(steps[step - 1][row, root], predicted[0, 0], atol=1e-5)
        # The unrolled steps differ from teacher forcing (a mask or position mistake could make them coincide).
        assert not torch.allclose(steps[1][:, :8], steps[0][:, 1:9], atol=1e-3)


def additive_mask_torch(visible: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(additive_mask(visible))


def _agreement(head, store, windows):
    with torch.no_grad():
        tokens = torch.from_numpy(np.asarray(store.tokens[windows]))
        features = torch.from_numpy(np.asarray(store.features[windows], dtype=np.float32))
        return eagle_loss(head, tokens, features)[3].item()


def test_train_eagle_cli_writes_a_loadable_head_that_agrees_with_the_target(text_target, tmp_path):
    target_dir, _, text_file = text_target
    output = tmp_path / "head"
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "dynexec", "train-eagle", "--model",
               str(target_dir), "--dataset", str(text_file), "--output", str(output), "--sequence-length", "64",
               "--max-windows", "200", "--epochs", "4", "--batch-size", "8", "--learning-rate", "3e-3",
               "--draft-steps", "2", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in output.iterdir()) == ["config.json", "model.safetensors", "training_summary.json"]
    summary = json.loads((output / "training_summary.json").read_text())

    model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    trained = load_eagle_head(output, model)
    untrained = EagleHead(eagle_config_from_target(model.config)).attach_target(model).eval()
    # Fresh held-out windows the head never saw (the tail of the text: training used a seeded subset).
    store = FeatureStore(tmp_path / "eval", _held_out_windows(target_dir, text_file), model.config.hidden_size)
    generate_features(model, store, batch_size=8, bf16_autocast=False, progress=False)
    trained_agreement = _agreement(trained, store, np.arange(len(store.tokens)))
    untrained_agreement = _agreement(untrained, store, np.arange(len(store.tokens)))
    assert trained_agreement > max(0.04, 8 * untrained_agreement), (trained_agreement, untrained_agreement)
    assert abs(summary["validation_top1_agreement"] - trained_agreement) < 0.25
    per_step = summary["validation_agreement_per_draft_step"]
    assert len(per_step) == 4 and per_step[0] == summary["validation_top1_agreement"]


def _held_out_windows(target_dir, text_file):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    ids = tokenizer(text_file.read_text()[-20000:], add_special_tokens=False)["input_ids"]
    count = len(ids) // 65
    return np.asarray(ids[: count * 65], dtype=np.int64).reshape(count, 65)[:16]


def test_training_resumes_from_its_checkpoint_and_features(text_target, tmp_path, monkeypatch):
    """A second run with the same arguments reuses the stored features and continues from the checkpoint."""
    import optimum_dynexec.speculative.eagle.training as training

    target_dir, texts, _ = text_target
    arguments = EagleTrainingArguments(sequence_length=32, max_windows=40, epochs=1, batch_size=8,
                                       checkpoint_steps=2, validation_windows=4, learning_rate=3e-3)
    steps_done = []
    original_step = torch.optim.AdamW.step

    class Interrupted(Exception):
        pass

    def interrupting_step(self, *args, **kwargs):
        steps_done.append(1)
        if len(steps_done) == 3:
            raise Interrupted
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupting_step)
    with pytest.raises(Interrupted):
        train_eagle_head(target_dir, texts, tmp_path / "head", arguments, progress=False)
    assert (tmp_path / "head" / training.WORK_FOLDER / "checkpoint.pt").is_file()
    assert not (tmp_path / "head" / "config.json").exists()  # nothing half-written where the head goes

    encoded = []
    original_generate = training.generate_features
    monkeypatch.setattr(training, "generate_features",
                        lambda target, store, *a: (encoded.append(store.done), original_generate(target, store, *a)))
    steps_done.clear()
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (steps_done.append(1),
                                                                          original_step(self, *a, **k))[1])
    summary = train_eagle_head(target_dir, texts, tmp_path / "head", arguments, progress=False)
    assert encoded == [40]  # every window's features were already stored
    assert len(steps_done) == summary["steps"] - 2  # resumed after the checkpoint at step 2
    assert not (tmp_path / "head" / training.WORK_FOLDER).exists()
    assert (tmp_path / "head" / "model.safetensors").is_file()


def test_self_distillation_ends_every_window_with_the_targets_greedy_continuation(text_target, tmp_path):
    target_dir, _, text_file = text_target
    model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    windows = _held_out_windows(target_dir, text_file)[:6]
    generated = 12
    store = FeatureStore(tmp_path / "distilled", windows, model.config.hidden_size, generated_tokens=generated)
    generate_features(model, store, batch_size=4, bf16_autocast=False, progress=False, generated_tokens=generated)

    tokens = np.asarray(store.tokens)
    np.testing.assert_array_equal(tokens[:, :-generated], windows[:, :-generated])
    assert (tokens[:, -generated:] != windows[:, -generated:]).any()  # the corpus text was really replaced
    with torch.no_grad():  # the reference: argmax of a full forward pass at every step, no cache
        for row in range(len(windows)):
            sequence = torch.from_numpy(windows[row, :-generated])
            for _ in range(generated):
                sequence = torch.cat([sequence, model(input_ids=sequence[None]).logits[0, -1].argmax()[None]])
            np.testing.assert_array_equal(tokens[row], sequence.numpy())
        hidden = model.get_decoder()(input_ids=torch.from_numpy(tokens)).last_hidden_state.numpy()
    np.testing.assert_allclose(np.asarray(store.features, dtype=np.float32), hidden, atol=2e-2, rtol=1e-2)

    # A store prepared without self-distillation is not reused for it (its tokens would be corpus text).
    plain = FeatureStore(tmp_path / "plain", windows, model.config.hidden_size)
    plain.mark_done(len(windows))
    assert FeatureStore(tmp_path / "plain", windows, model.config.hidden_size, generated_tokens=generated).done == 0


def test_self_distillation_needs_a_prefix_to_continue():
    with pytest.raises(ValueError, match="generated_tokens"):
        EagleTrainingArguments(sequence_length=64, generated_tokens=64)
    with pytest.raises(ValueError, match="draft_steps"):
        EagleTrainingArguments(sequence_length=64, draft_steps=0)
