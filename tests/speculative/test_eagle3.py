"""EAGLE-3 heads: the published layout, the fused target features, drafting over a draft vocabulary, exactness."""

import json

import numpy as np
import openvino as ov
import pytest
import torch
from helpers.chi_square import SIGNIFICANCE
from helpers.eagle_sampling import second_token_check
from helpers.published_eagle3_head import write_published_eagle3_head
from helpers.tiny_causal_lm import SINGLE_THREAD, SMALL_VOCAB_SIZE, load_speculative, new_tokens, random_prompt
from optimum.intel import OVModelForCausalLM
from transformers import AutoModelForCausalLM, LlamaConfig

from optimum_dynexec.speculative.eagle import (Eagle3Head, TreeSettings, default_feature_layers,
                                               eagle3_config_from_target, load_eagle_head, save_eagle_head,
                                               target_with_features)
from optimum_dynexec.speculative.kv_cache import TreeDecoderSession, sequence_inputs
from optimum_dynexec.speculative.paged_session import PagedDecoderSession
from optimum_dynexec.speculative.targets import SequenceTarget, TreeTarget
from optimum_dynexec.speculative.tree import DraftTree

LAYERS = [0, 2, 3]
DRAFT_TOKENS = list(range(0, 128, 2)) + [1, 3, 5]  # every even token and a few odd ones: 67 of 128


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A 4-layer tiny Llama target (EAGLE-3 fuses three of its layers), its OpenVINO export, an EAGLE-3 head in the
    published layout, the EAGLE model, and the plain f32 reference."""
    folder = tmp_path_factory.mktemp("eagle3")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    target = AutoModelForCausalLM.from_config(config).eval()
    target.save_pretrained(folder / "target")
    head = write_published_eagle3_head(config, folder / "head", LAYERS, DRAFT_TOKENS)
    model = load_speculative(folder / "target", export=True, eagle_head=folder / "head",
                             eagle_quantization_config=False)
    plain = OVModelForCausalLM.from_pretrained(folder / "target", export=True,
                                               ov_config={"INFERENCE_PRECISION_HINT": "f32", **SINGLE_THREAD})
    return folder, target, head, model, plain


def layer_outputs(target, ids, layers):
    """Each decoder layer's output, caught by hooks (transformers' `hidden_states[-1]` is after the final norm)."""
    caught, hooks = {}, []
    for layer in set(layers):
        hooks.append(target.model.layers[layer].register_forward_hook(
            lambda module, args, output, layer=layer: caught.__setitem__(layer, output[0] if isinstance(
                output, tuple) else output)))
    try:
        with torch.no_grad():
            target(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([caught[layer] for layer in layers], -1)


def _causal_mask(length):
    return torch.full((length, length), torch.finfo(torch.float32).min).triu(1)[None, None]


@pytest.mark.parametrize("prefix", ["", "model."])
def test_published_head_loads_and_computes_what_the_layout_means(deep, tmp_path, prefix):
    folder, target, reference, _, _ = deep
    write_published_eagle3_head(target.config, tmp_path / "head", LAYERS, DRAFT_TOKENS, prefix=prefix)
    head = load_eagle_head(tmp_path / "head", target)
    assert isinstance(head, Eagle3Head) and head.feature_layers == LAYERS
    assert head.draft_to_target.tolist() == sorted(DRAFT_TOKENS)
    ids = torch.randint(0, 128, (1, 9), generator=torch.Generator().manual_seed(1))
    fused = layer_outputs(target, ids, LAYERS)
    with torch.no_grad():
        embeddings = target.get_input_embeddings()(ids)
        for features in (fused, torch.randn(1, 9, 32)):  # the target's fused features, then the head's own
            expected_hidden, expected_logits = reference.reference_forward(embeddings, features)
            hidden = head(ids, features, torch.arange(9)[None], _causal_mask(9))
            torch.testing.assert_close(hidden, expected_hidden, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(head.logits(hidden), expected_logits, atol=1e-4, rtol=1e-4)


def test_save_writes_the_layout_it_loads(deep, tmp_path):
    _, target, _, _, _ = deep
    torch.manual_seed(4)
    head = Eagle3Head(eagle3_config_from_target(target.config, 40, LAYERS)).attach_target(target)
    head.set_draft_vocabulary(range(40, 80))
    save_eagle_head(head, tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"] and config["draft_vocab_size"] == 40
    assert config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == LAYERS
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "saved" / "model.safetensors")
    assert {"fc.weight", "norm.weight", "lm_head.weight", "d2t", "t2d", "embed_tokens.weight",
            "midlayer.hidden_norm.weight", "midlayer.self_attn.q_proj.weight"} <= set(tensors)
    assert tensors["fc.weight"].shape == (32, 96) and tensors["midlayer.self_attn.q_proj.weight"].shape[1] == 64
    assert (torch.arange(40) + tensors["d2t"]).tolist() == list(range(40, 80))
    assert tensors["t2d"].sum() == 40 and tensors["t2d"][40:80].all()
    reloaded = load_eagle_head(tmp_path / "saved", target)
    for name, tensor in head.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor)


def test_rewritten_target_returns_the_fused_features_of_the_chosen_layers(deep):
    folder, target, _, _, _ = deep
    ir = OVModelForCausalLM.from_pretrained(folder / "target", export=True, compile=False)
    fuse = np.random.default_rng(0).normal(size=(32, 96)).astype(np.float32)
    rewritten = target_with_features(ir.model, LAYERS, fuse)
    compiled = ov.Core().compile_model(rewritten, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **SINGLE_THREAD})
    session = TreeDecoderSession(compiled.create_infer_request())
    prompt = random_prompt(2, 10)[0].numpy()
    session.run(sequence_inputs(input_ids=prompt, position_ids=np.arange(10)))
    ids = torch.from_numpy(prompt)[None]
    expected = layer_outputs(target, ids, LAYERS)[0].numpy() @ fuse.T
    np.testing.assert_allclose(session.outputs("hidden_states"), expected, atol=2e-4 * np.abs(expected).max())
    # Another choice of layers gives other features: each layer's scope is found, not a neighbour's.
    other = layer_outputs(target, ids, (1, 2, 3))[0].numpy() @ fuse.T
    assert not np.allclose(session.outputs("hidden_states"), other, atol=1e-2)


@pytest.mark.parametrize("tree", [TreeSettings(), TreeSettings(depth=4, top_k=4, total_tokens=10)],
                         ids=["chain", "tree"])
def test_greedy_output_is_token_identical(deep, tree):
    _, _, _, model, plain = deep
    for seed in range(3):
        prompt = random_prompt(seed, 12)
        expected = new_tokens(plain, prompt, max_new_tokens=30)
        assert new_tokens(model, prompt, max_new_tokens=30, eagle_tree=tree) == expected
        assert model.last_decoding_stats.drafted_tokens > 0


def test_chains_verify_on_the_paged_target_with_the_features_trees_get(deep):
    """EAGLE chains are verified on the paged-attention target (the session of prompt lookup and draft models), trees
    on the tree-masked graph: both compute the same logits and fused features for a prompt, a verification, and the
    next verification after keeping part of it (a wrong rollback or a feature of another row would differ)."""
    _, _, _, model, _ = deep
    model.generate(random_prompt(0, 4), max_new_tokens=2)  # compiles the EAGLE graphs
    chain, _ = model.eagle.target_and_drafter(TreeSettings.chain(3))
    tree, _ = model.eagle.target_and_drafter(TreeSettings(depth=3, top_k=2, total_tokens=4))
    assert isinstance(chain, SequenceTarget) and isinstance(chain.session, PagedDecoderSession)
    assert isinstance(tree, TreeTarget)
    prompt = random_prompt(4, 11)[0].numpy()
    sequence = np.concatenate([prompt, [5]])
    steps = [lambda target: target.prefill(prompt),
             lambda target: target.verify(sequence, DraftTree.chain(np.array([7, 9, 11]))),
             lambda target: (target.keep(np.array([0])), target.verify(np.concatenate([sequence, [7, 40]]),
                                                                       DraftTree.chain(np.array([13, 2]))))[1]]
    for step in steps:
        on_chain = step(chain)
        logits, features = on_chain.logits.copy(), on_chain.features.copy()
        on_tree = step(tree)
        assert features.shape == on_tree.features.shape and logits.shape == on_tree.logits.shape
        np.testing.assert_allclose(logits, on_tree.logits, atol=1e-4 * np.abs(logits).max())
        np.testing.assert_allclose(features, on_tree.features, atol=1e-4 * np.abs(features).max())


def test_eagle_releases_the_plain_graph_until_a_fallback(deep):
    """EAGLE verifies on graphs of its own: optimum-intel's compiled graph is released at the first EAGLE call (one
    compiled copy of the weights less) and compiled again by a call that falls back to plain decoding."""
    folder, _, _, _, plain = deep
    model = load_speculative(folder / "target", export=True, eagle_head=folder / "head",
                             eagle_quantization_config=False)
    prompt = random_prompt(15, 9)
    assert model.request is not None  # compiled at load, as optimum-intel does
    assert new_tokens(model, prompt, max_new_tokens=6) == new_tokens(plain, prompt, max_new_tokens=6)
    assert model.request is None
    fallback = dict(max_new_tokens=6, repetition_penalty=1.3)  # not speculated: plain generate()
    assert new_tokens(model, prompt, **fallback) == new_tokens(plain, prompt, **fallback)
    assert model.request is not None


def test_drafts_are_the_heads_own_greedy_rollout_in_target_ids(deep):
    """A chain drafts the argmax draft token of the head fed its own features, mapped to the target's ids by
    `d2t`: written out by hand (an unmapped id, a wrong layer or a feature off by one level drafts other tokens)."""
    _, target, reference, model, _ = deep
    model.generate(random_prompt(0, 4), max_new_tokens=2)  # compiles the EAGLE graphs
    prompt = random_prompt(3, 12)[0].numpy()

    def draft(settings):
        target_side, drafter = model.eagle.target_and_drafter(settings)
        computed = target_side.prefill(prompt)
        root = int(computed.logits[-1].argmax())
        drafter.begin(prompt, computed, None, np.random.default_rng(0))
        return root, drafter.propose(np.concatenate([prompt, [root]]), 5)

    root, drafted = draft(TreeSettings.chain(5))

    fused = layer_outputs(target, torch.from_numpy(prompt)[None], LAYERS)[0]
    with torch.no_grad():
        features = fused @ reference.tensors["fc.weight"].T
        embeddings = target.get_input_embeddings().weight
        to_target = reference.draft_to_target()
        tokens, expected, confidence = list(prompt[1:]) + [root], [], [1.0]
        for _ in range(5):
            hidden, logits = reference.reference_forward(embeddings[tokens][None], features[None])
            expected.append(int(to_target[logits[0, -1].argmax()]))
            confidence.append(confidence[-1] * float(logits[0, -1].softmax(-1).max()))
            tokens.append(expected[-1])
            features = torch.cat([features, hidden[0, -1:]])
    assert drafted.tokens.tolist() == expected
    assert set(expected) <= set(DRAFT_TOKENS)
    # With `min_confidence`, the chain stops before the first level whose chain probability would fall below it.
    # Thresholds sit at the two sharpest drops (the head runs in bf16: a threshold between two close values would
    # test rounding).
    drops = sorted(range(5), key=lambda level: confidence[level + 1] / confidence[level])[:2]
    assert all(confidence[level + 1] < 0.8 * confidence[level] for level in drops)
    for level in drops:
        threshold = (confidence[level] * confidence[level + 1]) ** 0.5
        assert draft(TreeSettings.chain(5, min_confidence=threshold))[1].tokens.tolist() == expected[:level]


@pytest.mark.parametrize("tree, accepted_share", [(TreeSettings(depth=3, top_k=4, total_tokens=8), 0.15),
                                                   (TreeSettings.chain(3), 0.08)], ids=["tree", "chain"])
def test_sampling_is_distributed_as_the_target(tmp_path, tree, accepted_share):
    """With an EAGLE-3 head drafting over part of a 16-token vocabulary, the second sampled token (drafted most of
    the time) follows the target's marginal, in a tree (tree-masked target) and in a chain (paged target)."""
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=SMALL_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch_model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        torch_model.lm_head.weight.mul_(1.5 / torch_model(torch.arange(3, 16)[None]).logits.std())
    torch_model.save_pretrained(tmp_path / "target")
    write_published_eagle3_head(config, tmp_path / "head", [0, 1, 2], range(3, 15), seed=3)
    model = load_speculative(tmp_path / "target", export=True, eagle_head=tmp_path / "head")

    pvalue, accepted = second_token_check(model, torch_model, random_prompt(3, 6, SMALL_VOCAB_SIZE), SMALL_VOCAB_SIZE,
                                          tree=tree)
    assert accepted > accepted_share  # a chain offers one token per level, a tree four
    assert pvalue > SIGNIFICANCE


def test_save_load_round_trip_keeps_the_fused_layers(deep, tmp_path):
    _, _, _, model, plain = deep
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "eagle" / "eagle_config.json").read_text())
    assert saved["eagle3_feature_layers"] == LAYERS
    reloaded = load_speculative(tmp_path / "saved")
    prompt = random_prompt(7, 12)
    assert new_tokens(reloaded, prompt, max_new_tokens=25, eagle_tree=TreeSettings(depth=3, top_k=3, total_tokens=8)) \
        == new_tokens(plain, prompt, max_new_tokens=25)


def test_errors_say_what_to_do(deep, tmp_path):
    _, target, _, _, _ = deep
    write_published_eagle3_head(target.config, tmp_path / "deeper", [0, 2, 7], DRAFT_TOKENS)
    with pytest.raises(ValueError, match="layers .*trained for another target"):
        load_eagle_head(tmp_path / "deeper", target)
    write_published_eagle3_head(target.config, tmp_path / "broken", LAYERS, DRAFT_TOKENS)
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "broken" / "model.safetensors")
    del tensors["d2t"]
    save_file(tensors, tmp_path / "broken" / "model.safetensors")
    with pytest.raises(ValueError, match="missing \\['d2t'\\]"):
        load_eagle_head(tmp_path / "broken", target)
    with pytest.raises(ValueError, match="feature_layers"):
        eagle3_config_from_target(target.config, 40, [0, 1])
    with pytest.raises(ValueError, match="draft_vocab_size"):
        eagle3_config_from_target(target.config, 500, LAYERS)
    with pytest.raises(ValueError, match="three distinct target layers"):
        default_feature_layers(4)
    assert default_feature_layers(30) == [2, 15, 27]


def test_train_eagle3_cli_writes_a_published_layout_head_that_agrees_with_the_target(text_target, tmp_path):
    """`train-eagle --eagle3` on text plus the target's own answers to chat prompts: a published-layout head whose
    draft vocabulary is the target's most frequent choices, agreeing with the target on held-out windows far
    beyond an untrained head, and reporting that agreement per drafting step."""
    import shutil
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from optimum_dynexec.speculative.eagle.training import FeatureStore, eagle3_step_scores, generate_features

    source_dir, _, text_file = text_target
    target_dir = tmp_path / "target"
    shutil.copytree(source_dir, target_dir)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    tokenizer.chat_template = ("{% for m in messages %}user: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    tokenizer.save_pretrained(target_dir)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Explain the module number {i}."}) + "\n" for i in range(6)))
    output = tmp_path / "head"
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "dynexec", "train-eagle", "--eagle3",
               "--model", str(target_dir), "--dataset", str(text_file), "--chat-prompts", str(prompts),
               "--answer-tokens", "16", "--feature-layers", "0", "1", "1", "--draft-vocab-size", "96",
               "--output", str(output), "--sequence-length", "64", "--max-windows", "200", "--epochs", "4",
               "--batch-size", "8", "--learning-rate", "3e-3", "--draft-steps", "2", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in output.iterdir()) == ["config.json", "model.safetensors", "training_summary.json"]
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["eagle3"] and summary["draft_vocab_size"] == 96 and summary["chat_prompts"] == 6
    assert 0.5 < summary["validation_draft_vocabulary_coverage"] <= 1.0
    assert len(summary["validation_agreement_per_draft_step"]) == 4

    model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    trained = load_eagle_head(output, model)
    assert isinstance(trained, Eagle3Head) and trained.feature_layers == [0, 1, 1]
    untrained = Eagle3Head(trained.config).attach_target(model).eval()
    untrained.set_draft_vocabulary(trained.draft_to_target)
    tokens = tokenizer(text_file.read_text()[-20000:], add_special_tokens=False)["input_ids"]
    windows = np.asarray(tokens[: 16 * 65], dtype=np.int64).reshape(16, 65)
    store = FeatureStore(tmp_path / "eval", windows, 4 * model.config.hidden_size, with_choices=True)
    generate_features(model, store, 8, False, False, feature_layers=[0, 1, 1])
    choices = torch.from_numpy(np.asarray(store.choices).astype(np.int64))
    # The draft vocabulary is the target's most frequent choices: it covers most of what the target writes.
    assert trained.t2d[choices].float().mean() > 0.5
    rows = model.get_output_embeddings().weight[torch.from_numpy(trained.draft_to_target)].detach()
    with torch.no_grad():
        agreement = [eagle3_step_scores(head, torch.from_numpy(windows), torch.from_numpy(
            np.asarray(store.features, dtype=np.float32)), choices, rows, 2)[0][2].item()
            for head in (trained, untrained)]
    assert agreement[0] > max(0.1, 4 * agreement[1]), agreement


def test_openvino_genai_serves_the_exported_head_and_decodes_as_the_target(text_target, tmp_path):
    """`optimum-cli export dynexec --eagle-head` on an EAGLE-3 head writes a folder openvino-genai serves as is: the
    target at its root, the head as `eagle/` (`draft_model(...)`); genai's greedy output equals plain decoding and
    ours, and it accepts the trained head's drafts (the fused layers, `fc` and `d2t` line up)."""
    import subprocess
    import sys

    openvino_genai = pytest.importorskip("openvino_genai")
    from transformers import AutoTokenizer

    from optimum_dynexec.speculative.eagle.training import EagleTrainingArguments, train_eagle_head

    source_dir, texts, _ = text_target
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # sharper logits: preferences the head can learn
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(tmp_path / "target")
    tokenizer.save_pretrained(tmp_path / "target")
    arguments = EagleTrainingArguments(sequence_length=64, max_windows=200, epochs=4, batch_size=8,
                                       learning_rate=3e-3, draft_steps=2, eagle3=True, draft_vocab_size=128,
                                       feature_layers=(0, 2, 3), bf16_autocast=False)
    train_eagle_head(tmp_path / "target", texts, tmp_path / "head", arguments, progress=False)
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "dynexec", "--model",
               str(tmp_path / "target"), "--eagle-head", str(tmp_path / "head"), str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    draft_ir = ov.Core().read_model(tmp_path / "out" / "eagle" / "openvino_model.xml")
    assert draft_ir.get_rt_info()["eagle3_mode"].astype(str) == "True"
    assert [int(v) for v in draft_ir.get_rt_info()["hidden_layers_list"].astype(str).split()] == [0, 2, 3]

    exact = {"INFERENCE_PRECISION_HINT": "f32"}
    plain = openvino_genai.LLMPipeline(str(tmp_path / "out"), "CPU", **exact)
    served = openvino_genai.LLMPipeline(str(tmp_path / "out"), "CPU", **exact, draft_model=openvino_genai.draft_model(
        str(tmp_path / "out" / "eagle"), "CPU", **exact))
    ours = load_speculative(tmp_path / "out")
    prompt = tokenizer(texts[3][:400], add_special_tokens=False)["input_ids"][:40]

    def generate(pipeline, **settings):
        config = pipeline.get_generation_config()
        config.max_new_tokens, config.do_sample, config.ignore_eos = 40, False, True
        for name, value in settings.items():
            setattr(config, name, value)
        return pipeline.generate(ov.Tensor(np.array([prompt], dtype=np.int64)), config)

    expected = list(generate(plain).tokens[0])
    # Ours stops at the end-of-sequence token, which genai's `ignore_eos` decodes past.
    own = new_tokens(ours, torch.tensor([prompt]), max_new_tokens=40)
    assert own == expected[: len(own)] and (len(own) == 40 or own[-1] == tokenizer.eos_token_id)
    # Chain mode. genai 2026.4's tree mode (branching_factor > 1) accepts the head's drafts too, but its greedy output
    # leaves the target's argmax where two logits are close (docs/eagle.md, "Serving"), so it is not checked here.
    result = generate(served, num_assistant_tokens=4)
    assert list(result.tokens[0]) == expected
    assert result.extended_perf_metrics.get_num_accepted_tokens() > 0


def test_chat_answers_are_the_targets_own_greedy_answers_batched_or_not(text_target, tmp_path):
    """Batched (left-padded, longest first) answers equal answering each prompt alone; each stops after its first
    end-of-sequence token; a tokenizer without a chat template is refused with what to do."""
    from transformers import AutoTokenizer

    from optimum_dynexec.speculative.self_distillation import chat_answers

    target_dir, _, _ = text_target
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    with pytest.raises(ValueError, match="chat template"):
        chat_answers(model, tokenizer, ["hi"], 4, progress=False)
    tokenizer.chat_template = ("{% for m in messages %}user: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    prompts = ["Explain the module os.", "What does it do?", "A much longer question about the import system and "
               "how it finds, loads and caches modules?"]
    batched = chat_answers(model, tokenizer, prompts, 12, batch_size=3, progress=False)
    alone = [chat_answers(model, tokenizer, [prompt], 12, batch_size=1, progress=False)[0] for prompt in prompts]
    assert batched == alone
    for prompt, document in zip(prompts, batched):
        assert document.startswith(f"user: {prompt}\nassistant:")
        assert document.count(tokenizer.eos_token) <= 1 and (tokenizer.eos_token not in document
                                                              or document.endswith(tokenizer.eos_token))
