"""Speculation that never dies, never answers wrongly and says what is wrong: OpenVINO's AMX crash steered around,
`min_new_tokens` and token suppression honoured exactly, batches and threads, bad input."""

import logging
import threading
from collections import Counter

import numpy as np
import openvino as ov
import pytest
import torch
from helpers.chi_square import SIGNIFICANCE, goodness_of_fit
from helpers.published_eagle_head import write_published_head
from helpers.tiny_causal_lm import (SINGLE_THREAD, load_plain, load_speculative, new_tokens, random_prompt,
                                    repetitive_prompt, shared_plain)
from transformers import AutoConfig, AutoModelForCausalLM

from optimum_dynexec import OVSpeculativeModelForCausalLM, openvino_cpu
from optimum_dynexec.openvino_cpu import CpuFacts, crash_free_properties
from optimum_dynexec.speculative.decoding import BannedTokens, DecodingStats, speculative_decode
from optimum_dynexec.speculative.drafters import DraftModelDrafter
from optimum_dynexec.speculative.eagle import TreeSettings
from optimum_dynexec.speculative.paged_session import decoder_session_for
from optimum_dynexec.speculative.sampling import SamplingSettings

AMX = CpuFacts(has_amx=True, default_precision="bf16", usable_cores=2)
AMX_ONE_CORE = CpuFacts(has_amx=True, default_precision="bf16", usable_cores=1)
AVX512_BF16 = CpuFacts(has_amx=False, default_precision="bf16", usable_cores=2)  # e.g. AMD Zen 4
AVX2 = CpuFacts(has_amx=False, default_precision="f32", usable_cores=1)
ONE_THREAD = {"INFERENCE_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------- OpenVINO's AMX crash

@pytest.mark.parametrize("cpu, properties, stateful, device, safe_precision", [
    (AMX, ONE_THREAD, True, "CPU", "f32"),  # the crash: default bf16, one thread, a stateful graph
    (AMX, {**ONE_THREAD, "INFERENCE_PRECISION_HINT": "bf16"}, True, "CPU", "f32"),
    (AMX, {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": ov.Type.bf16}, True, "CPU", "f32"),
    (AMX, {**ONE_THREAD, "INFERENCE_PRECISION_HINT": "f16"}, True, "CPU", "f32"),
    (AMX_ONE_CORE, {}, True, "CPU", "f32"),  # one usable core: the plugin's default is one thread
    (AMX, {}, True, "CPU", None),  # default threads on 2 cores
    (AMX, {"INFERENCE_NUM_THREADS": "2"}, True, "CPU", None),
    (AMX, {**ONE_THREAD, "INFERENCE_PRECISION_HINT": "f32"}, True, "CPU", None),
    (AMX, {**ONE_THREAD, "EXECUTION_MODE_HINT": "ACCURACY"}, True, "CPU", None),
    (AMX, ONE_THREAD, False, "CPU", None),  # stateless graphs do not crash
    (AMX, ONE_THREAD, True, "GPU", None),
    (AVX512_BF16, ONE_THREAD, True, "CPU", None),  # bf16 by default, but no AMX
    (AVX2, ONE_THREAD, True, "CPU", None),
])
def test_crash_rule_is_a_function_of_the_cpu_and_the_properties(cpu, properties, stateful, device, safe_precision):
    chosen, reason = crash_free_properties(properties, device, stateful, cpu)
    if safe_precision is None:
        assert chosen == properties and reason is None
    else:
        assert chosen == {**properties, "INFERENCE_PRECISION_HINT": safe_precision}
        assert "AMX" in reason and "INFERENCE_NUM_THREADS" in reason and "\n" not in reason


@pytest.fixture(scope="module")
def llama(tiny_models):
    target_dir = tiny_models.ir("llama")
    return target_dir, tiny_models.ir("llama-draft"), shared_plain(target_dir)


@pytest.fixture(scope="module")
def eagle_llama(tiny_models, tmp_path_factory):
    target_dir = tiny_models.checkpoint("llama")
    head_dir = tmp_path_factory.mktemp("eagle_head") / "head"
    write_published_head(AutoConfig.from_pretrained(target_dir), head_dir)
    return target_dir, head_dir


# "this machine" runs the real rule (on a CPU with AMX it must move every graph to f32, or the process dies); "amx"
# pretends the CPU has AMX, which is safe everywhere since the rule then asks for f32.
@pytest.mark.parametrize("cpu", [AMX, None], ids=["amx", "this-machine"])
def test_every_graph_the_package_compiles_follows_the_rule(llama, eagle_llama, tiny_models, monkeypatch, caplog, cpu):
    """Target, attached draft, per-call assistant (their own graphs and the paged graphs speculation runs on), EAGLE
    target and head, all asked for bf16 on one thread: on a CPU with AMX each is compiled at f32 (warned once),
    elsewhere each keeps bf16."""
    cpu = cpu or CpuFacts.of_this_machine()
    monkeypatch.setattr(CpuFacts, "of_this_machine", classmethod(lambda cls: cpu))
    openvino_cpu.forget_warnings()
    target_dir, draft_dir, plain = llama
    default = {**SINGLE_THREAD, "INFERENCE_PRECISION_HINT": "bf16"}
    if cpu.has_amx:
        expected = "f32"
    else:  # what OpenVINO makes of the request unchanged (a CPU without bf16 computes in f32)
        expected = openvino_cpu.compiled_precision(ov.Core().compile_model(ov.Core().read_model(draft_dir / "openvino_model.xml"),
                                                               "CPU", default))
    prompt = random_prompt(5, 8)
    with caplog.at_level(logging.WARNING, logger="optimum_dynexec.openvino_cpu"):
        model = OVSpeculativeModelForCausalLM.from_pretrained(
            target_dir, draft_model=draft_dir, ov_config=default, draft_ov_config={"INFERENCE_PRECISION_HINT": "bf16"})
        assert openvino_cpu.compiled_precision(model.request.get_compiled_model()) == expected
        assert openvino_cpu.compiled_precision(model.draft_model.request.get_compiled_model()) == expected
        assistant = load_plain(tiny_models.ir("llama-draft"), compile=False)
        assistant.ov_config = dict(default)
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, assistant_model=assistant)
        # What speculation runs on: each model's paged-attention graph, compiled apart from its own.
        for speculating in (model, model.draft_model, assistant):
            assert openvino_cpu.compiled_precision(decoder_session_for(speculating).request.get_compiled_model()) == expected

        eagle_target, head_dir = eagle_llama
        eagle = OVSpeculativeModelForCausalLM.from_pretrained(eagle_target, export=True, eagle_head=head_dir,
                                                              ov_config=default)
        eagle.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4)
        chain_target, eagle_drafter = eagle.eagle.target_and_drafter(TreeSettings.chain(3))
        tree_target, _ = eagle.eagle.target_and_drafter(TreeSettings(depth=3, top_k=2, total_tokens=4))
        assert [openvino_cpu.compiled_precision(request) for request in
                (chain_target.session.request, tree_target.session.request, eagle_drafter.head.request)
                ] == [expected] * 3
    warnings = [record for record in caplog.records if "AMX" in record.getMessage()]
    assert len(warnings) == (1 if cpu.has_amx else 0)  # one line, once per process


# ------------------------------------------------------------------------------------- min_new_tokens and bans

def _eos_after(plain, prompt, index: int) -> int:
    """A token plain greedy decoding produces at `index`: as EOS, it would end generation there."""
    return new_tokens(plain, prompt, max_new_tokens=index + 1)[index]


@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup", "eagle"])
@pytest.mark.parametrize("rule", ["min_new_tokens", "min_length", "suppress_tokens", "begin_suppress_tokens"])
def test_generation_rules_are_honoured_token_identically(llama, eagle_llama, drafting, rule):
    target_dir, draft_dir, plain = llama
    prompt = repetitive_prompt(plain, 3)
    eos = _eos_after(plain, prompt, 1)
    settings = {
        "min_new_tokens": dict(eos_token_id=eos, min_new_tokens=12),
        "min_length": dict(eos_token_id=eos, min_length=prompt.shape[1] + 12),
        "suppress_tokens": dict(suppress_tokens=[eos, _eos_after(plain, prompt, 4)]),
        "begin_suppress_tokens": dict(begin_suppress_tokens=[_eos_after(plain, prompt, 0)]),
    }[rule]
    expected = new_tokens(plain, prompt, max_new_tokens=24, **settings)
    unruled = new_tokens(plain, prompt, max_new_tokens=24, **{k: v for k, v in settings.items() if k == "eos_token_id"})
    assert expected != unruled  # the rule changes plain decoding's output here

    if drafting == "eagle":
        model = load_speculative(eagle_llama[0], export=True, eagle_head=eagle_llama[1])
        arguments = {}
    else:
        model = load_speculative(target_dir, draft_model=draft_dir)
        arguments = dict(prompt_lookup_num_tokens=4) if drafting == "prompt_lookup" else {}
    assert new_tokens(model, prompt, max_new_tokens=24, **settings, **arguments) == expected
    assert model.last_decoding_stats is not None and model.last_decoding_stats.drafted_tokens > 0


def test_banned_tokens_are_applied_by_position():
    banned = BannedTokens(eos_until=3, eos_ids=(2, 99), always=(5,), at_first=(7,))
    logits = np.zeros((4, 10), dtype=np.float32)
    banned.apply(logits, first_index=1, offsets=np.array([0, 1, 2, 1]))  # a tree: rows at depths 0, 1, 2, 1
    assert np.isinf(logits[:, 5]).all()  # always
    assert np.isinf(logits[[0, 1, 3], 2]).all() and not np.isinf(logits[2, 2])  # new tokens 1, 2, 2 < 3; 3 is not
    assert not np.isinf(logits[:, 7]).any()  # not the first new token
    logits = np.zeros((2, 10), dtype=np.float32)
    banned.apply(logits, first_index=0)
    assert np.isinf(logits[0, 7]) and not np.isinf(logits[1, 7])


SAMPLING = dict(do_sample=True, temperature=2.0, top_k=3, top_p=0.95)


def _exact_distribution(plain, prompt, settings, eos: int, min_new_tokens: int, depth: int) -> dict:
    """P(first `depth` tokens) of plain sampling with EOS banned before `min_new_tokens` (EOS ends the output)."""
    distribution = {}

    def expand(prefix, probability):
        if len(prefix) == depth or (prefix and prefix[-1] == eos):
            distribution[prefix] = distribution.get(prefix, 0.0) + probability
            return
        input_ids = torch.cat([prompt, torch.tensor([prefix], dtype=prompt.dtype).reshape(1, -1)], dim=1)
        logits = plain(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0, -1].numpy().copy()
        if len(prefix) < min_new_tokens:
            logits[eos] = -np.inf
        probabilities = settings.probabilities(logits[None])[0]
        for token in np.flatnonzero(probabilities):
            expand(prefix + (int(token),), probability * probabilities[token])

    expand((), 1.0)
    return distribution


@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup"])
def test_min_new_tokens_sampling_is_distributed_as_plain_sampling(llama, drafting):
    target_dir, draft_dir, plain = llama
    prompt = random_prompt(11, 8)
    settings = SamplingSettings(SAMPLING["temperature"], SAMPLING["top_k"], SAMPLING["top_p"])
    first_logits = plain(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits[0, -1].numpy()
    eos = int(settings.probabilities(first_logits[None])[0].argmax())  # the likeliest first token becomes EOS
    exact = _exact_distribution(plain, prompt, settings, eos, min_new_tokens=2, depth=3)
    unbanned = _exact_distribution(plain, prompt, settings, eos, min_new_tokens=0, depth=3)
    assert unbanned.get((eos,), 0.0) > 0.2 and (eos,) not in exact  # the ban matters here

    model = load_speculative(target_dir, draft_model=draft_dir)
    speculation = (dict(prompt_lookup_num_tokens=2) if drafting == "prompt_lookup" else
                   dict(num_assistant_tokens=2, num_assistant_tokens_schedule="constant"))
    torch.manual_seed(0)
    counts, drafted = Counter(), 0
    for _ in range(800):
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, eos_token_id=eos,
                                min_new_tokens=2, **SAMPLING, **speculation)
        counts[tuple(output[0, prompt.shape[1]:].tolist())] += 1
        drafted += model.last_decoding_stats.drafted_tokens
    assert drafted > 0
    assert goodness_of_fit(counts, exact) > SIGNIFICANCE
    assert goodness_of_fit(counts, unbanned) < SIGNIFICANCE  # the check tells the two apart


def test_eagle_sampling_with_min_new_tokens_is_distributed_as_the_target(small):
    """The second token's marginal, with EOS (here the likeliest first token) banned for the first two tokens."""
    target_dir, model = small
    torch_model = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    vocab = torch_model.config.vocab_size
    prompt = random_prompt(3, 6, vocab)
    temperature = 1.5
    with torch.no_grad():
        first_logits = torch_model(prompt).logits[0, -1] / temperature
        eos = int(first_logits.argmax())
        first = torch.softmax(first_logits.index_fill(0, torch.tensor([eos]), -torch.inf), -1)
        sequences = torch.cat([prompt.repeat(vocab, 1), torch.arange(vocab)[:, None]], 1)
        second_logits = torch_model(sequences).logits[:, -1] / temperature
        second = torch.softmax(second_logits.index_fill(1, torch.tensor([eos]), -torch.inf), -1)
    expected = (first[:, None] * second).sum(0).double().numpy()

    model.generate(prompt, max_new_tokens=2)  # compiles the EAGLE graphs
    target, drafter = model.eagle.target_and_drafter(TreeSettings(depth=3, top_k=4, total_tokens=8))
    sampling, rng = SamplingSettings(temperature), np.random.default_rng(0)
    trials, counts, accepted = 600, np.zeros(vocab), 0
    for _ in range(trials):
        stats = DecodingStats()
        tokens = speculative_decode(target, drafter, prompt[0].numpy(), 3, eos_token_ids=[eos], sampling=sampling,
                                    rng=rng, stats=stats, banned=BannedTokens(eos_until=2, eos_ids=(eos,)))
        counts[tokens[1]] += 1
        accepted += stats.accepted_lengths[0] > 0
    assert accepted > trials * 0.15 and counts[eos] == 0
    observed = Counter({token: int(count) for token, count in enumerate(counts) if count})
    assert goodness_of_fit(observed, dict(enumerate(expected.tolist()))) > SIGNIFICANCE


def test_drafts_never_exceed_what_is_still_wanted(llama, monkeypatch):
    target_dir, draft_dir, plain = llama
    proposals = []
    original = DraftModelDrafter.propose

    def spy(self, sequence, limit=None):
        draft = original(self, sequence, limit)
        proposals.append((len(draft.tokens), limit))
        return draft

    monkeypatch.setattr(DraftModelDrafter, "propose", spy)
    model = load_speculative(target_dir, draft_model=draft_dir)
    prompt = repetitive_prompt(plain, 3)
    output = new_tokens(model, prompt, max_new_tokens=6, num_assistant_tokens=100,
                        num_assistant_tokens_schedule="constant")
    assert output == new_tokens(plain, prompt, max_new_tokens=6)
    assert proposals and all(length <= limit <= 5 for length, limit in proposals)


# ------------------------------------------------------------------------------------- batches and threads

@pytest.mark.parametrize("plain_call", [
    dict(batch=2), dict(num_beams=2), dict(num_return_sequences=2, do_sample=True),
], ids=["batch", "beams", "return_sequences"])
def test_a_plain_batch_call_leaves_the_model_speculating(llama, plain_call):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    prompt = random_prompt(7, 8)
    expected = new_tokens(plain, prompt, max_new_tokens=12)
    plain_call = dict(plain_call)
    if plain_call.pop("batch", None):
        model.generate(torch.cat([prompt, random_prompt(8, 8)]), max_new_tokens=5, do_sample=False)
    else:
        model.generate(prompt, max_new_tokens=5, **plain_call)
    for drafting in ({}, dict(prompt_lookup_num_tokens=3)):
        assert new_tokens(model, prompt, max_new_tokens=12, **drafting) == expected
        assert model.last_decoding_stats is not None


def test_concurrent_calls_on_one_model_give_the_sequential_results(llama):
    target_dir, draft_dir, _ = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    calls = [(random_prompt(seed, 6 + seed % 5), dict(prompt_lookup_num_tokens=3) if seed % 3 == 0 else {})
             for seed in range(12)]
    sequential = [new_tokens(model, prompt, max_new_tokens=16, **arguments) for prompt, arguments in calls]
    results, errors = [None] * len(calls), []

    def work(indices):
        try:
            for index in indices:
                prompt, arguments = calls[index]
                results[index] = new_tokens(model, prompt, max_new_tokens=16, **arguments)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=work, args=(range(start, len(calls), 4),)) for start in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == sequential


# ------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("prompt, arguments, error, message", [
    (torch.tensor([5, 6, 7]), {}, ValueError, r"`input_ids` must have shape \[batch, length\]"),
    (torch.zeros((1, 0), dtype=torch.long), {}, ValueError, "`input_ids` is empty"),
    (torch.tensor([[5.0, 6.0]]), {}, TypeError, "integer token ids"),
    (torch.tensor([[5, 100000]]), {}, ValueError, "outside the model's vocabulary"),
    ([[5, 6]], {}, TypeError, "`input_ids` must be a torch.LongTensor"),
    (torch.tensor([[5, 6, 7]]), dict(attention_mask=torch.zeros((1, 3), dtype=torch.long)), ValueError,
     "masks out every token"),
    (torch.tensor([[5, 6, 7]]), dict(attention_mask=torch.ones((1, 2), dtype=torch.long)), ValueError,
     "`attention_mask` must have the shape"),
    (torch.tensor([[5, 6, 7]]), dict(max_length=2), ValueError, "`max_length` is set to 2"),
    (torch.tensor([[5, 6, 7]]), dict(do_sample=True, temperature=0.0), ValueError, "`temperature`"),
    (torch.tensor([[5, 6, 7]]), dict(max_new_tokens=4, min_new_tokens=-1), ValueError, "`min_new_tokens`"),
])
def test_bad_prompts_and_settings_raise_clear_errors(llama, prompt, arguments, error, message):
    target_dir, draft_dir, _ = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    arguments.setdefault("max_new_tokens", None) if "max_length" in arguments else arguments.setdefault(
        "max_new_tokens", 4)
    with pytest.raises(error, match=message):
        model.generate(prompt, **arguments)


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damaged", ["target-xml", "target-bin", "draft-xml", "draft-bin", "eagle-xml"])
def test_damaged_model_files_are_named_in_the_error(llama, eagle_llama, tmp_path, damaged):
    target_dir, draft_dir, _ = llama
    if damaged == "eagle-xml":
        saved = load_speculative(eagle_llama[0], export=True, eagle_head=eagle_llama[1], compile=False)
    else:
        saved = load_speculative(target_dir, draft_model=draft_dir, compile=False)
    saved.save_pretrained(tmp_path / "saved")
    part, kind = damaged.split("-")
    folder = tmp_path / "saved" / {"target": "", "draft": "draft", "eagle": "eagle"}[part]
    _truncate(next(folder.glob(f"*.{kind}")))
    with pytest.raises(ValueError, match=r"(draft_model|model_id|EAGLE head).*(damaged or incomplete)"):
        load_speculative(tmp_path / "saved")


@pytest.mark.parametrize("arguments, error, message", [
    (dict(model_id="/no/such/folder"), ValueError, "`model_id`: /no/such/folder does not exist"),
    (dict(model_id=42), TypeError, "`model_id` must be a folder path"),
    (dict(draft_model="/no/such/draft"), ValueError, "`draft_model`: /no/such/draft does not exist"),
    (dict(draft_model="./missing-draft"), ValueError, "`draft_model`: ./missing-draft does not exist"),
    (dict(draft_model="no-such-model-id"), ValueError, "`draft_model`='no-such-model-id' is neither a local folder"),
])
def test_missing_models_get_a_clear_error(llama, arguments, error, message):
    target_dir, _, _ = llama
    model_id = arguments.pop("model_id", target_dir)
    with pytest.raises(error, match=message):
        load_speculative(model_id, **arguments)


# ------------------------------------------------------------------------------------- native precision

def test_default_precision_is_plains_and_diverges_only_at_near_ties(llama):
    """At the device's default precision (plain optimum-intel's), greedy output equals plain default decoding's
    wherever the target's choice is clear: a first divergence sits at a position where the two tokens' logits are
    within the precision's rounding of each other."""
    from optimum.intel import OVModelForCausalLM

    from optimum_dynexec.openvino_cpu import crash_free

    target_dir, draft_dir, exact = llama
    # No precision named: the device's default. One thread, unless OpenVINO would then have to compile at f32
    # (stateful graphs on AMX CPUs, `openvino_cpu.crash_free`): the default threads keep the default precision.
    properties = SINGLE_THREAD if "INFERENCE_PRECISION_HINT" not in crash_free(SINGLE_THREAD, "CPU", True) else {}
    plain = OVModelForCausalLM.from_pretrained(target_dir, ov_config=properties)
    model = OVSpeculativeModelForCausalLM.from_pretrained(target_dir, draft_model=draft_dir, ov_config=properties)
    assert "INFERENCE_PRECISION_HINT" not in model.ov_config  # nothing added to what plain runs with
    assert model.request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT") == \
        plain.request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
    identical = drafted = 0
    for seed in range(6):
        prompt = repetitive_prompt(exact, seed) if seed % 2 else random_prompt(seed, 10)
        for drafting in ({}, dict(prompt_lookup_num_tokens=4)):
            ours = new_tokens(model, prompt, max_new_tokens=24, **drafting)
            reference = new_tokens(plain, prompt, max_new_tokens=24)
            drafted += model.last_decoding_stats.drafted_tokens
            if ours == reference:
                identical += 1
                continue
            index = next(i for i, (a, b) in enumerate(zip(ours, reference)) if a != b)
            prefix = torch.cat([prompt, torch.tensor([reference[:index]], dtype=prompt.dtype).reshape(1, -1)], 1)
            logits = exact(input_ids=prefix, attention_mask=torch.ones_like(prefix)).logits[0, -1]
            margin = abs(float(logits[ours[index]] - logits[reference[index]]))
            assert margin < 0.02 * float(logits.abs().max()), (seed, drafting, index, margin)
    assert identical >= 6 and drafted > 0  # most outputs are identical outright


def test_gguf_files_are_accepted_wherever_a_model_id_is(tmp_path, monkeypatch):
    import subprocess
    import sys

    from helpers.tiny_gguf import random_model, reference_tokenizer, write_gguf

    monkeypatch.setenv("OPTIMUM_DYNEXEC_CACHE", str(tmp_path / "cache"))
    tokenizer = reference_tokenizer("smollm")
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    target = write_gguf(tmp_path / "target.gguf", model=random_model("llama", vocab_size, seed=0), tokenizer=tokenizer)
    draft = write_gguf(tmp_path / "draft.gguf", model=random_model("llama", vocab_size, seed=1), tokenizer=tokenizer)

    model = OVSpeculativeModelForCausalLM.from_pretrained(target, draft_model=draft, ov_config=dict(SINGLE_THREAD))
    assert model.draft_model is not None and model.config.vocab_size == vocab_size
    prompt = torch.tensor([tokenizer.encode("def main():\n    return 1").ids])
    ours = new_tokens(model, prompt, max_new_tokens=8)
    assert model.last_decoding_stats.drafted_tokens > 0
    reference = OVSpeculativeModelForCausalLM.from_pretrained(target, ov_config=dict(SINGLE_THREAD))
    assert ours == new_tokens(reference, prompt, max_new_tokens=8)  # same weights, same precision, no draft

    output = tmp_path / "exported"
    result = subprocess.run([sys.executable, "-m", "optimum.commands.optimum_cli", "export", "dynexec", "--model",
                             str(target), "--draft-model", str(draft), str(output)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (output / "openvino_model.xml").is_file() and (output / "draft" / "openvino_model.xml").is_file()
    assert (output / "tokenizer.json").is_file() and (output / "openvino_tokenizer.xml").is_file()
    with pytest.raises(ValueError, match="does not exist"):
        OVSpeculativeModelForCausalLM.from_pretrained(tmp_path / "missing.gguf")
