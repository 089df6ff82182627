"""Tiny causal LMs built from configs, exported to OpenVINO once, and the ways the tests load and run them.

Nothing is downloaded. `TinyModels.checkpoint(name)` is a transformers folder built from a config with a fixed
seed; `TinyModels.ir(name, stateful)` is that checkpoint exported by `OVModelForCausalLM.from_pretrained(...,
export=True)` and saved as OpenVINO IR. Every (name, stateful) pair is exported once (see `TinyModels` for the
cache) and tests load the saved IR, which takes well under a second. The session's `TinyModels` is the
`tiny_models` fixture of tests/conftest.py.
"""

import contextlib
import functools
import hashlib
import importlib.metadata
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pytest
import torch
import transformers
from optimum.intel import OVModelForCausalLM

from lab.fixtures.cache import fixture_cache_dir
from optimum_dynexec.utils.io import atomic_directory
from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG, OVSpeculativeModelForCausalLM


# -------------------------------------------------------------------------------------------------- tiny models

VOCAB_SIZE = 128
SMALL_VOCAB_SIZE = 16
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
_DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512)


def _config(architecture: str, vocab_size: int = VOCAB_SIZE):
    tokens = dict(vocab_size=vocab_size, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    if architecture == "llama":
        return transformers.LlamaConfig(**_DECODER, **tokens)
    if architecture == "qwen2":
        return transformers.Qwen2Config(**_DECODER, **tokens)
    if architecture == "mistral":
        return transformers.MistralConfig(**_DECODER, **tokens)
    if architecture == "phi3":
        return transformers.Phi3Config(**_DECODER, original_max_position_embeddings=512, **tokens)
    if architecture == "gpt2":
        return transformers.GPT2Config(n_embd=32, n_inner=64, n_layer=2, n_head=4, n_positions=512, **tokens)
    # Beyond the families the issue names, each with a different way to place tokens: learned positions offset by
    # the attention mask (OPT), ALiBi from the mask (Bloom), multi-query attention (GPTBigCode), partial rotary
    # (GPT-NeoX, GPT-J), a fused QKV with grouped KV heads (Falcon), QK-norm (Qwen3), and mixture-of-experts (Mixtral);
    # ALiBi counted by cache slot, with no `position_ids` input (MPT); and sliding attention windows much shorter
    # than the tests' sequences, on every layer (Mistral, whose default is 4096 tokens) or on alternate "local"
    # layers (GPT-Neo, 256 by default).
    if architecture == "mpt":
        return transformers.MptConfig(d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=512,
                                      tie_word_embeddings=False, **tokens)
    if architecture == "mistral-window":
        return transformers.MistralConfig(**_DECODER, sliding_window=8, **tokens)
    if architecture == "gpt_neo-window":
        return transformers.GPTNeoConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                                         attention_types=[[["global", "local"], 1]], window_size=8,
                                         max_position_embeddings=512, **tokens)
    if architecture == "opt":
        return transformers.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                                      word_embed_proj_dim=32, max_position_embeddings=512, **tokens)
    if architecture == "bloom":
        return transformers.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **tokens)
    if architecture == "gpt_bigcode":
        return transformers.GPTBigCodeConfig(n_embd=32, n_inner=64, n_layer=2, n_head=4, n_positions=512,
                                             multi_query=True, **tokens)
    if architecture == "gpt_neox":
        return transformers.GPTNeoXConfig(**_DECODER, **tokens)
    if architecture == "gptj":
        return transformers.GPTJConfig(n_embd=32, n_layer=2, n_head=4, n_positions=512, rotary_dim=4, **tokens)
    if architecture == "falcon":
        return transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         new_decoder_architecture=True, num_kv_heads=2, **tokens)
    if architecture == "qwen3":
        return transformers.Qwen3Config(**_DECODER, head_dim=8, **tokens)
    if architecture == "mixtral":
        return transformers.MixtralConfig(**_DECODER, num_local_experts=4, num_experts_per_tok=2, **tokens)
    raise ValueError(architecture)


@torch.no_grad()
def _sharpen(model, logit_std: float) -> None:
    """Scale the output embedding so logits have about `logit_std` spread: random models have flat logits, where
    greedy choices hinge on tiny differences and sampling on a near-uniform distribution."""
    probe = torch.randint(3, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    std = model(probe).logits.std().item()
    output_embedding = model.get_output_embeddings().weight
    output_embedding.mul_(logit_std / std)
    # An EOS logit of 0 among logits of spread `logit_std` is (almost) never the argmax: greedy outputs run to
    # `max_new_tokens` unless a test picks its own `eos_token_id`.
    output_embedding[EOS_ID] = 0.0


@torch.no_grad()
def _perturb(model, relative_noise: float, seed: int) -> None:
    """Add Gaussian noise (relative to each tensor's spread) to every weight: a draft that agrees with the target
    often, but not always."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        if parameter.dim() > 1:
            parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std() * relative_noise)


def _build_target(architecture: str, vocab_size: int = VOCAB_SIZE, seed: int = 0, logit_std: float = 4.0,
                  boost: float = 1.0):
    """`boost` scales every matrix but the embeddings: attention gets sharp, so where a token sits (its position,
    its ALiBi distance, whether it is inside a window) changes the output, which a random tiny model's near-uniform
    attention hides."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(_config(architecture, vocab_size))
    with torch.no_grad():
        embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
        for parameter in model.parameters():
            if parameter.dim() > 1 and id(parameter) not in embeddings:
                parameter.mul_(boost)
    _sharpen(model, logit_std)
    return model


def _build_noisy_copy(of: Callable, relative_noise: float, seed: int):
    def build():
        model = of()
        _perturb(model, relative_noise, seed)
        return model
    return build


# name -> builder of a torch model: sharpened random models of several architectures sharing one vocabulary, so
# any of them can draft for any other.
MODEL_BUILDERS: Dict[str, Callable] = {
    "llama": lambda: _build_target("llama"),
    "qwen2": lambda: _build_target("qwen2"),
    "mistral": lambda: _build_target("mistral", seed=5),
    "gpt2": lambda: _build_target("gpt2"),
    "phi3": lambda: _build_target("phi3"),
    # Agrees with "llama" on part of the tokens: its drafts are partly accepted, partly rejected.
    "llama-draft": _build_noisy_copy(lambda: _build_target("llama"), relative_noise=0.3, seed=1),
    # Another vocabulary: cannot draft for the others.
    "small-vocab": lambda: _build_target("llama", SMALL_VOCAB_SIZE, seed=4),
}
ARCHITECTURES = ("llama", "qwen2", "mistral", "gpt2", "phi3")
MORE_ARCHITECTURES = ("opt", "bloom", "gpt_bigcode", "gpt_neox", "gptj", "falcon", "qwen3", "mixtral", "mpt", "mistral-window",
                      "gpt_neo-window")
MODEL_BUILDERS.update({architecture: functools.partial(_build_target, architecture)
                       for architecture in MORE_ARCHITECTURES})
MODEL_BUILDERS.update({architecture: functools.partial(_build_target, architecture, boost=3.0)
                       for architecture in ("mpt", "gpt_neo-window")})


def architecture_cases(architectures=ARCHITECTURES + MORE_ARCHITECTURES):
    """Every `(architecture, stateful)` pair, as pytest parameters."""
    return [
        pytest.param(architecture, stateful, id=f"{architecture}-{'stateful' if stateful else 'stateless'}")
        for architecture in architectures for stateful in (True, False)
    ]


@contextlib.contextmanager
def _fast_export():
    """Export without the steps that cannot change a tiny model's IR but cost seconds on a loaded machine.

    * torch.jit's trace self-check re-runs the model to compare outputs;
    * the size-based weight compression reads the saved IR back to count parameters, and compresses only models
      above 1B parameters.
    """
    import optimum.exporters.openvino.__main__ as main_export
    import optimum.exporters.openvino.convert as convert

    patches = [
        (convert, "allow_skip_tracing_check", lambda library_name, model_type: True),
        (main_export, "_apply_model_size_based_quantization", lambda submodel_paths, ov_config, output: None),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, replacement in patches:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


class TinyModels:
    """Builds and exports the tiny models of `MODEL_BUILDERS`.

    Checkpoints are built per session (a fraction of a second each). Exported IRs are cached across sessions under
    `fixture_cache_dir()/test-models`, keyed by the checkpoint's bytes, `stateful` and the versions of everything
    the export runs through: an export costs 10-20 s on a loaded machine, and its result depends on nothing else.
    Set `OPTIMUM_DYNEXEC_TEST_EXPORT_CACHE=0` to export everything afresh into the session directory.
    """

    def __init__(self, root: Path, export_cache: Optional[Path]):
        self.root = root
        self.export_cache = export_cache
        self._checkpoints: Dict[str, Path] = {}
        self._irs: Dict[Tuple[str, bool], Path] = {}

    def checkpoint(self, name: str) -> Path:
        """A transformers checkpoint folder (config.json, weights, generation_config.json)."""
        if name not in self._checkpoints:
            path = self.root / "checkpoints" / name
            MODEL_BUILDERS[name]().save_pretrained(path)
            self._checkpoints[name] = path
        return self._checkpoints[name]

    def ir(self, name: str, stateful: bool = True) -> Path:
        """The checkpoint exported to OpenVINO IR by optimum-intel (what `export=True` produces), saved."""
        key = (name, stateful)
        if key not in self._irs:
            checkpoint = self.checkpoint(name)
            cache = self.export_cache if self.export_cache is not None else self.root / "ir"
            path = cache / f"{name}-{'stateful' if stateful else 'stateless'}-{_export_key(checkpoint, stateful)}"
            if not (path / "openvino_model.xml").is_file():
                with atomic_directory(path) as staging, _fast_export():
                    # f32 cache ports: loaded at a bf16 CPU's default, a stateless model's IR is saved rounding its
                    # cache to bf16 (`cache_rounded_to_16_bits`), where greedy identity holds only up to near-ties.
                    model = OVModelForCausalLM.from_pretrained(checkpoint, export=True, stateful=stateful, compile=False,
                                                               ov_config=dict(EXACT_PRECISION_CONFIG))
                    assert model.stateful == stateful
                    model.save_pretrained(staging)
            self._irs[key] = path
        return self._irs[key]


def _export_key(checkpoint: Path, stateful: bool) -> str:
    digest = hashlib.sha256(f"stateful={stateful}".encode() + (b"" if stateful else b", f32 cache ports"))
    for package in ("optimum-intel", "optimum", "openvino", "transformers", "torch", "nncf"):
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    for file in sorted(checkpoint.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------ loading

# Tiny models run fastest on one thread, and a loaded 2-core machine makes multi-threaded inference slower still.
SINGLE_THREAD = {"INFERENCE_NUM_THREADS": "1", "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
# The suite compiles ~150 models, a few of them dozens of times: OpenVINO's model cache (keyed by the graph and the
# compile options) turns a 0.4 s compile into a 0.1 s import.
TEST_OV_CONFIG = {**SINGLE_THREAD, "CACHE_DIR": str(fixture_cache_dir() / "test-models" / "compiled")}


def load_plain(path, **kwargs) -> OVModelForCausalLM:
    """The reference: a plain `OVModelForCausalLM` at the precision the speculative model uses."""
    return OVModelForCausalLM.from_pretrained(path, ov_config={**EXACT_PRECISION_CONFIG, **TEST_OV_CONFIG}, **kwargs)


def load_speculative(path, **kwargs) -> OVSpeculativeModelForCausalLM:
    """The speculative model at f32, the setting under which its greedy output is token-identical to `load_plain`'s
    (the package's default is the device's precision, as plain optimum-intel's is)."""
    return OVSpeculativeModelForCausalLM.from_pretrained(path, ov_config={**EXACT_PRECISION_CONFIG, **TEST_OV_CONFIG},
                                                         **kwargs)


def new_tokens(model, prompt: torch.Tensor, **kwargs) -> list:
    """Greedy (unless `kwargs` say otherwise) continuation of a `[1, length]` prompt, as a list of token ids."""
    kwargs.setdefault("do_sample", False)
    output = model.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    return output[0, prompt.shape[1]:].tolist()


def random_prompt(seed: int, length: int, vocab_size: int = VOCAB_SIZE) -> torch.Tensor:
    """Random ordinary tokens (no pad/BOS/EOS), shape `[1, length]`."""
    generator = np.random.default_rng(seed)
    return torch.from_numpy(generator.integers(EOS_ID + 1, vocab_size, size=(1, length)))


_PLAIN_MODELS: Dict[Path, OVModelForCausalLM] = {}


def shared_plain(path) -> OVModelForCausalLM:
    """`load_plain(path)`, loaded once per session: the reference model, which tests only read from."""
    path = Path(path)
    if path not in _PLAIN_MODELS:
        _PLAIN_MODELS[path] = load_plain(path)
    return _PLAIN_MODELS[path]


_EXPECTED_TOKENS: Dict[tuple, list] = {}


def expected_tokens(path, prompt: torch.Tensor, max_new_tokens: int) -> list:
    """Greedy `new_tokens` of the shared plain model of `path`, computed once per session."""
    key = (Path(path), tuple(prompt[0].tolist()), max_new_tokens)
    if key not in _EXPECTED_TOKENS:
        _EXPECTED_TOKENS[key] = new_tokens(shared_plain(path), prompt, max_new_tokens=max_new_tokens)
    return _EXPECTED_TOKENS[key]


_REPETITIVE_PROMPTS: Dict[Tuple[Path, int, int], torch.Tensor] = {}


def repetitive_prompt(plain_model, seed: int, length: int = 24) -> torch.Tensor:
    """A prompt the model continues by repeating it: a cycle of its own greedy output.

    Greedy decoding with a sharpened random model falls into a cycle; a few turns of that cycle as a prompt are
    continued with more of the cycle, so prompt lookup drafts are accepted.
    """
    key = (str(plain_model.model_save_dir), seed, length)  # the model's IR folder
    for attempt in range(8):
        if key in _REPETITIVE_PROMPTS:
            break
        tokens = _greedy_without_cache(plain_model, random_prompt(seed + 1000 * attempt, 6), 120)
        for period in range(1, 25):
            if tokens[-3 * period:] == tokens[-4 * period:-period]:  # the last 4 periods repeat
                _REPETITIVE_PROMPTS[key] = torch.tensor([tokens[-max(length, 2 * period):]])
                break
    assert key in _REPETITIVE_PROMPTS, f"no greedy output from seeds {seed} + 1000 * k ends in a cycle"
    return _REPETITIVE_PROMPTS[key]


@torch.no_grad()
def _greedy_without_cache(plain_model, prompt: torch.Tensor, count: int) -> list:
    """Greedy continuation by full forward passes: for tiny models, much cheaper than `generate()`'s per-step work."""
    tokens = prompt
    for _ in range(count):
        logits = plain_model(input_ids=tokens, attention_mask=torch.ones_like(tokens)).logits
        tokens = torch.cat([tokens, logits[:, -1:].argmax(dim=-1)], dim=1)
    return tokens[0, prompt.shape[1]:].tolist()


def looping_prompt(seed: int, period: int = 7) -> torch.Tensor:
    """A random segment, repeated, then its start again: prompt lookup drafts the segment's continuation, which the
    model may or may not follow."""
    segment = random_prompt(seed, period)
    return torch.cat([segment, segment, segment[:, :2]], dim=1)
