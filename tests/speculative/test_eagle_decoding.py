"""EAGLE generation: tree verification and cache keeping, greedy identity, exact sampling, and the model API."""

import json

import numpy as np
import openvino as ov
import pytest
import torch
from helpers.chi_square import SIGNIFICANCE
from helpers.eagle_sampling import second_token_check
from helpers.published_eagle_head import write_published_head
from helpers.tiny_causal_lm import (SMALL_VOCAB_SIZE, SINGLE_THREAD, load_plain, load_speculative, new_tokens,
                                    random_prompt)
from optimum.intel import OVModelForCausalLM
from transformers import AutoConfig, AutoModelForCausalLM

from optimum_dynexec.speculative.decoding import DecodingStats, speculative_decode
from optimum_dynexec.speculative.drafters import Drafter
from optimum_dynexec.speculative.eagle import TreeSettings, target_with_features
from optimum_dynexec.speculative.kv_cache import TreeDecoderSession, sequence_inputs
from optimum_dynexec.speculative.tree import DraftTree
from optimum_dynexec.weight_compression import weight_compression_config

TREES = [TreeSettings(depth=6, top_k=4, total_tokens=12), TreeSettings(), TreeSettings(depth=3, top_k=6, total_tokens=16)]


@pytest.fixture(scope="module")
def llama(tiny_models, tmp_path_factory):
    """The tiny llama target, a published-format head for it, the EAGLE model and the plain reference."""
    target_dir = tiny_models.checkpoint("llama")
    head_dir = tmp_path_factory.mktemp("eagle_head") / "head"
    write_published_head(AutoConfig.from_pretrained(target_dir), head_dir)
    model = load_speculative(target_dir, export=True, eagle_head=head_dir)
    plain = load_plain(tiny_models.ir("llama"))
    return target_dir, head_dir, model, plain


def test_last_logits_only_scores_the_last_row_and_keeps_every_feature(tiny_models):
    """`last_logits_only` (the prompt's prefill, the head's calls) gives the last row's logits of a full run."""
    rewritten = target_with_features(ov.Core().read_model(tiny_models.ir("llama") / "openvino_model.xml"))
    compiled = ov.Core().compile_model(rewritten, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **SINGLE_THREAD})
    full, last = (TreeDecoderSession(compiled.create_infer_request()) for _ in range(2))
    prompt = random_prompt(1, 12)[0].numpy()
    full.run(sequence_inputs(input_ids=prompt, position_ids=np.arange(12)))
    last.run(sequence_inputs(input_ids=prompt, position_ids=np.arange(12)), last_logits_only=True)
    assert full.outputs("logits").shape[0] == 12 and last.outputs("logits").shape[0] == 1
    assert np.allclose(last.outputs("logits")[0], full.outputs("logits")[-1], atol=1e-5)
    assert not np.allclose(last.outputs("logits")[0], full.outputs("logits")[-2], atol=1e-2)
    assert np.array_equal(last.outputs("hidden_states"), full.outputs("hidden_states"))


def test_tree_session_keeps_exactly_the_accepted_path(tiny_models, llama):
    """After scoring a tree and keeping one path, the next token's logits equal a plain run of that sequence."""
    target_dir = llama[0]
    torch_model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    rewritten = target_with_features(ov.Core().read_model(tiny_models.ir("llama") / "openvino_model.xml"))
    compiled = ov.Core().compile_model(rewritten, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **SINGLE_THREAD})
    session = TreeDecoderSession(compiled.create_infer_request())
    prompt = random_prompt(0, 10)[0].numpy()
    session.run(sequence_inputs(input_ids=prompt, position_ids=np.arange(10)))
    # root 50; children 60, 61; 61 has children 70, 71; 71 has child 80. Keep root -> 61 -> 71 -> 80.
    tree = DraftTree(np.array([60, 61, 70, 71, 80]), np.array([-1, -1, 1, 1, 3]), np.array([1, 1, 2, 2, 3]))
    visible = np.ones((6, 16), dtype=bool)
    visible[:, 10:] = tree.visibility()
    session.run(sequence_inputs(input_ids=np.concatenate([[50], tree.tokens]),
                      position_ids=10 + np.concatenate([[0], tree.depths])), visible)
    session.keep(10, np.array([0, 2, 4, 5]))
    assert session.length == 14
    request = session.run(sequence_inputs(input_ids=np.array([90]), position_ids=np.array([14])))
    sequence = torch.from_numpy(np.concatenate([prompt, [50, 61, 71, 80, 90]]))[None]
    with torch.no_grad():
        expected = torch_model(sequence).logits[0, -1].numpy()
    # f32 kernels fused differently from torch's differ by ~1e-4 on logits of spread ~4; a wrongly kept or
    # wrongly masked row changes them by O(1).
    assert np.allclose(request.get_tensor("logits").data[0, -1], expected, atol=1e-3)
    assert session.masked_slots == 2


@pytest.mark.parametrize("tree", TREES, ids=["eagle2", "default-chain", "wide"])
def test_greedy_output_is_token_identical_with_a_published_format_head(llama, tree):
    _, _, model, plain = llama
    for seed in range(3):
        prompt = random_prompt(seed, 12)
        expected = new_tokens(plain, prompt, max_new_tokens=40)
        assert new_tokens(model, prompt, max_new_tokens=40, eagle_tree=tree) == expected
        stats = model.last_decoding_stats
        assert stats.drafted_tokens > 0 and stats.new_tokens == 40


class OracleDrafter(Drafter):
    """Drafts from the known right answer: the true path is present down to a random depth, at a random position
    among decoy siblings; below that depth every child is wrong. Greedy verification must accept exactly the
    true part, whatever the tree's shape."""

    def __init__(self, answer, prompt_length, rng):
        self.answer, self.prompt_length, self.rng = answer, prompt_length, rng
        self.designed = []

    def propose(self, sequence, limit):
        # The last token of `sequence` is the root; the true continuation follows it.
        truth = self.answer[len(sequence) - self.prompt_length :]
        correct_depth = int(self.rng.integers(0, 5))
        tokens, parents, depths = [], [], []
        parent = -1
        for depth in range(1, 6):
            true_token = int(truth[depth - 1]) if depth - 1 < len(truth) else 3
            decoys = [t for t in (3 + (true_token + 1 + k) % 100 for k in range(3)) if t != true_token]
            choices = ([true_token] if depth <= correct_depth else []) + decoys[: 2 if depth <= correct_depth else 3]
            self.rng.shuffle(choices)
            first = len(tokens)
            for token in choices:
                tokens.append(token), parents.append(parent), depths.append(depth)
            on_path = [first + i for i, t in enumerate(choices) if t == true_token and depth <= correct_depth]
            parent = on_path[0] if on_path else first  # below the true part: grow under a wrong node
        self.designed.append(min(correct_depth, max(0, len(truth))))
        return DraftTree(np.array(tokens), np.array(parents), np.array(depths)).truncated(limit)


# A tree shape: `target_and_drafter` then gives the tree-verifying target (chains get the paged one).
ORACLE_TREE = TreeSettings(depth=5, top_k=3, total_tokens=15)


def test_tree_verification_accepts_exactly_the_true_part_of_any_tree(llama):
    target_dir, _, model, plain = llama
    model.generate(random_prompt(0, 4), max_new_tokens=2)  # compiles the EAGLE graphs
    prompt = random_prompt(7, 12)
    answer = np.array(new_tokens(plain, prompt, max_new_tokens=60))
    target, _ = model.eagle.target_and_drafter(ORACLE_TREE)
    oracle = OracleDrafter(answer, 12, np.random.default_rng(0))
    stats = DecodingStats()
    output = speculative_decode(target, oracle, prompt[0].numpy(), 60, stats=stats)
    assert output.tolist() == answer.tolist()
    # Each verification accepted the designed number of true tokens (capped by the tokens left to generate).
    assert stats.accepted_lengths == [min(d, 60 - 2 - sum(stats.accepted_lengths[:i]) - i)
                                      for i, d in enumerate(oracle.designed)]
    assert stats.mean_accepted_length > 2.0


@pytest.mark.parametrize("architecture", ["qwen2", "gpt2", "mixtral", "mistral-window"])
def test_targets_of_other_families_verify_trees_exactly(tiny_models, architecture, tmp_path):
    """Qwen2's and Mistral's own decoder layers serve as their heads; GPT-2's (no rotary positions) and Mixtral's
    (experts) cannot, so theirs is a Llama-style layer of the target's sizes. Either way the rewritten target
    verifies trees exactly: a drafting head's greedy output equals plain decoding, and an oracle's true tokens are
    all accepted. The Mistral target attends within an 8-token window, which the tree masks must apply."""
    from optimum_dynexec.speculative.eagle import EagleHead, eagle_config_from_target, save_eagle_head

    target_dir = tiny_models.checkpoint(architecture)
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    config = eagle_config_from_target(target.config)
    assert config.model_type == {"qwen2": "qwen2", "mistral-window": "mistral"}.get(architecture, "llama")
    torch.manual_seed(0)
    save_eagle_head(EagleHead(config).attach_target(target), tmp_path / "head")
    model = load_speculative(target_dir, export=True, eagle_head=tmp_path / "head")
    plain = load_plain(tiny_models.ir(architecture))
    prompt = random_prompt(3, 12)
    answer = np.array(new_tokens(plain, prompt, max_new_tokens=40))
    assert new_tokens(model, prompt, max_new_tokens=40) == answer.tolist()
    assert model.last_decoding_stats.drafted_tokens > 0
    target, _ = model.eagle.target_and_drafter(ORACLE_TREE)  # the tree target applies the model's attention window
    oracle = OracleDrafter(answer, 12, np.random.default_rng(1))
    stats = DecodingStats()
    assert speculative_decode(target, oracle, prompt[0].numpy(), 40, stats=stats).tolist() == answer.tolist()
    assert stats.accepted_lengths == [min(d, 40 - 2 - sum(stats.accepted_lengths[:i]) - i)
                                      for i, d in enumerate(oracle.designed)]


def test_unsupported_targets_and_heads_get_a_clear_error(tiny_models, tmp_path):
    from optimum_dynexec.speculative.eagle import EagleHead, eagle_config_from_target, save_eagle_head

    bloom = AutoModelForCausalLM.from_pretrained(tiny_models.checkpoint("bloom"))  # ALiBi: no position ids
    save_eagle_head(EagleHead(eagle_config_from_target(bloom.config)).attach_target(bloom), tmp_path / "head")
    with pytest.raises(ValueError, match="position_ids.*draft model"):
        load_speculative(tiny_models.checkpoint("bloom"), export=True, eagle_head=tmp_path / "head")
    neo = AutoModelForCausalLM.from_pretrained(tiny_models.checkpoint("gpt_neo-window"))  # global + local layers
    save_eagle_head(EagleHead(eagle_config_from_target(neo.config)).attach_target(neo), tmp_path / "neo-head")
    with pytest.raises(ValueError, match="2 different masks.*draft model"):
        load_speculative(tiny_models.checkpoint("gpt_neo-window"), export=True, eagle_head=tmp_path / "neo-head")
    for architecture, reason in (("mixtral", "mixtures of experts"), ("gpt2", "not laid out as Llama's")):
        with pytest.raises(ValueError, match=f"`{architecture}` family.*{reason}.*Llama-style config"):
            EagleHead(AutoConfig.from_pretrained(tiny_models.checkpoint(architecture)))


def test_chain_drafts_are_the_heads_own_greedy_rollout(llama, tmp_path):
    """A chain drafts, level by level, the argmax token of the head fed its own predicted feature: the rollout
    written out by hand in torch (a position or feature off by one level drafts other tokens; greedy identity
    would not notice, only acceptance would drop)."""
    target_dir = llama[0]
    head = write_published_head(AutoConfig.from_pretrained(target_dir), tmp_path / "head", seed=1)
    model = load_speculative(target_dir, export=True, eagle_head=tmp_path / "head", eagle_quantization_config=False)
    model.generate(random_prompt(0, 4), max_new_tokens=2)  # compiles the EAGLE graphs
    target, drafter = model.eagle.target_and_drafter(TreeSettings.chain(5))
    prompt = random_prompt(3, 12)[0].numpy()
    computed = target.prefill(prompt)
    features = computed.features.copy()
    root = int(computed.logits[-1].argmax())
    drafter.begin(prompt, computed, None, np.random.default_rng(0))
    pair_tokens = np.concatenate([prompt[1:], [root]])
    positions = []
    run = drafter.head.run
    drafter.head.run = lambda inputs, *args, **kwargs: (positions.append(inputs["position_ids"][0].tolist()),
                                                        run(inputs, *args, **kwargs))[1]
    try:
        drafted = drafter.propose(np.concatenate([prompt, [root]]), 5)
    finally:
        del drafter.head.run
    # Pair i (feature of token i, token i + 1) sits at position i; the chain's levels continue from there.
    assert positions == [list(range(12)), [12], [13], [14], [15]]
    last_feature = drafter.head.outputs("hidden_states")[-1].copy()  # of the last level's call
    assert drafter.head.length == 12  # the drafts are rolled back; the head keeps the pairs only

    torch_target = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    embeddings, lm_head = torch_target.get_input_embeddings().weight, torch_target.get_output_embeddings().weight
    tokens, rollout_features, expected = list(pair_tokens), torch.from_numpy(features), []
    with torch.no_grad():
        for _ in range(5):
            hidden, logits = head.reference_forward(embeddings[tokens][None], rollout_features[None], lm_head)
            expected.append(int(logits[0, -1].argmax()))
            tokens.append(expected[-1])
            rollout_features = torch.cat([rollout_features, hidden[0, -1:]])
    assert drafted.tokens.tolist() == expected
    assert drafted.parents.tolist() == [-1, 0, 1, 2, 3]
    # The CPU plugin keeps the head's KV cache at reduced precision: ~2e-3 from the f32 reference.
    np.testing.assert_allclose(last_feature, hidden[0, -1].numpy(), atol=1e-2)


def test_sampling_is_distributed_as_the_target(small):
    """The second sampled token (drafted through the tree most of the time) follows the target's marginal."""
    target_dir, model = small
    torch_model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    pvalue, accepted = second_token_check(model, torch_model, random_prompt(3, 6, SMALL_VOCAB_SIZE), SMALL_VOCAB_SIZE)
    assert accepted > 0.15  # the tree really proposed the second token often
    assert pvalue > SIGNIFICANCE


def test_save_load_round_trip_and_plain_loading(llama, tmp_path):
    _, _, model, plain = llama
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved" / "eagle").iterdir()) == [
        "config.json", "eagle_config.json", "model.safetensors", "openvino_eagle_head.bin",
        "openvino_eagle_head.xml"]  # no second copy of the target: its tree graph is derived at compile time
    assert json.loads((tmp_path / "saved" / "dynexec_config.json").read_text())["speculative"]["eagle_subfolder"] == "eagle"
    assert not [p for p in (tmp_path / "saved").iterdir() if p.name.startswith(".")]

    reloaded = load_speculative(tmp_path / "saved", eagle_tree={"depth": 4, "top_k": 2, "total_tokens": 6})
    assert reloaded.eagle is not None and reloaded.eagle.tree == TreeSettings(4, 2, 6)
    prompt = random_prompt(11, 12)
    expected = new_tokens(plain, prompt, max_new_tokens=30)
    assert new_tokens(reloaded, prompt, max_new_tokens=30) == expected
    # The target's own files are untouched: optimum-intel loads the folder as a plain model.
    assert new_tokens(load_plain(tmp_path / "saved"), prompt, max_new_tokens=30) == expected



def test_pipeline_text_generation_runs_eagle(text_target, tmp_path):
    from transformers import AutoTokenizer, pipeline

    target_dir = text_target[0]
    write_published_head(AutoConfig.from_pretrained(target_dir), tmp_path / "head")
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    model = load_speculative(target_dir, export=True, eagle_head=tmp_path / "head")
    plain = OVModelForCausalLM.from_pretrained(target_dir, export=True, ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    prompt = "def main(argv):\n    "
    expected = pipeline("text-generation", model=plain, tokenizer=tokenizer)(prompt, max_new_tokens=16,
                                                                              do_sample=False)
    generated = pipeline("text-generation", model=model, tokenizer=tokenizer)(prompt, max_new_tokens=16,
                                                                              do_sample=False)
    assert generated[0]["generated_text"] == expected[0]["generated_text"]
    assert model.last_decoding_stats.drafted_tokens > 0


def test_head_weights_are_8bit_unless_asked_otherwise(llama, monkeypatch):
    from optimum_dynexec.speculative.config import EAGLE_HEAD_DEFAULT_COMPRESSION, eagle_head_compression
    from optimum_dynexec.speculative.eagle import OVEagle

    target_dir, head_dir, model, _ = llama

    def compressed_constants(ov_model):
        return sum(op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.u8, ov.Type.i8)
                   for op in ov_model.get_ops())

    # The fixture's model was loaded without any quantization argument: the head got the 8-bit default.
    assert compressed_constants(model.eagle.head_model) >= 8  # fc, q, k, v, o, gate, up, down (+ lm_head)
    full = load_speculative(target_dir, export=True, eagle_head=head_dir, eagle_quantization_config=False,
                            compile=False)
    assert compressed_constants(full.eagle.head_model) == 0
    # The head gets its own setting first, then the target's, then the default.
    received = [eagle_head_compression(load_in_8bit=True),
                eagle_head_compression(quantization_config={"bits": 4, "sym": True}),
                eagle_head_compression({"bits": 4, "group_size": 16}, load_in_8bit=True),
                eagle_head_compression(),
                eagle_head_compression(False, load_in_8bit=True)]
    expected = [{"bits": 8}, {"bits": 4, "sym": True}, {"bits": 4, "group_size": 16}, EAGLE_HEAD_DEFAULT_COMPRESSION]
    assert [config.to_dict() for config in received[:4]] == [weight_compression_config(c).to_dict() for c in expected]
    assert received[4] is False
    # A config that is not weight-only compression is refused before the head is exported, naming its argument.
    exported = []
    monkeypatch.setattr(OVEagle, "export", lambda *args, **kwargs: exported.append(args))
    with pytest.raises(TypeError, match="`eagle_quantization_config` must be an `OVWeightQuantizationConfig`"):
        load_speculative(target_dir, export=True, eagle_head=head_dir, eagle_quantization_config="int8", compile=False)
    with pytest.raises(TypeError, match="`quantization_config` must be an `OVWeightQuantizationConfig`"):
        eagle_head_compression(quantization_config="int8")
    assert exported == []


def test_errors_name_the_argument(llama, tmp_path, tiny_models):
    from optimum_dynexec.speculative.eagle import OVEagle

    target_dir, head_dir, model, _ = llama
    other = tmp_path / "wider"
    config = AutoConfig.from_pretrained(target_dir)
    config.hidden_size, config.intermediate_size = 64, 96
    write_published_head(config, other)
    with pytest.raises(ValueError, match="hidden_size=64"):
        OVEagle.export(target_dir, other)
    with pytest.raises(ValueError, match="transformers checkpoint"):
        load_speculative(tiny_models.ir("llama"), eagle_head=head_dir, compile=False)
    with pytest.raises(ValueError, match="eagle_tree"):
        model.generate(random_prompt(0, 5), max_new_tokens=3, eagle_tree={"width": 3})
    with pytest.raises(ValueError, match="top_k"):
        TreeSettings(top_k=0)
