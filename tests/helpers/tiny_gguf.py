"""Tiny GGUF files written the way llama.cpp's converter writes them, with gguf-py's `GGUFWriter`.

f32 tensors under llama.cpp's names, Llama's q/k rows permuted, a byte-level BPE vocabulary with merges trained
here (`reference_tokenizer`, the tokenizer the GGUF is made from), a chat template and token ids in the metadata.
`random_model` is a Llama / Qwen2 / Qwen3 with every tensor random, whose tensors `write_gguf` can store.
"""

import json
import sysconfig
from pathlib import Path

import numpy as np
import torch
import transformers
from gguf import GGUFWriter, TokenType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

END_OF_TEXT, IM_START, IM_END, TOOL_CALL = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _training_text() -> str:
    # Real text the machine has: a few standard-library modules (test_gguf.py's held-out strings are not in them).
    folder = Path(sysconfig.get_paths()["stdlib"])
    return "\n".join((folder / name).read_text(encoding="utf-8") for name in ("textwrap.py", "string.py", "shlex.py"))


def reference_tokenizer(pre: str, vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE trained here, pre-tokenized as the GGUF `pre` type says: what the GGUF was made from."""
    tokenizer = Tokenizer(models.BPE())
    if pre == "smollm":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    else:  # qwen2
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator([_training_text()], trainer=trainer)
    tokenizer.add_tokens([AddedToken(TOOL_CALL, special=False, normalized=False)])
    return tokenizer


def _vocabulary(tokenizer: Tokenizer):
    """(tokens by id, token types, merges as "a b") as llama.cpp's converter stores them."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    assert [vocab[token] for token in tokens] == list(range(len(tokens)))
    types = [int(TokenType.CONTROL) if token in (END_OF_TEXT, IM_START, IM_END)
             else int(TokenType.USER_DEFINED) if token == TOOL_CALL else int(TokenType.NORMAL) for token in tokens]
    merges = [" ".join(merge) if isinstance(merge, (list, tuple)) else merge
              for merge in json.loads(tokenizer.to_str())["model"]["merges"]]
    return tokens, types, merges


def _config(architecture: str, vocab_size: int):
    shape = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                 bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if architecture == "llama":  # untied: the GGUF carries `output.weight`
        return transformers.LlamaConfig(**shape, tie_word_embeddings=False)
    if architecture == "qwen2":  # q/k/v biases, tied embeddings
        return transformers.Qwen2Config(**shape, tie_word_embeddings=True)
    # Qwen3: q/k norms, and a head size that is not hidden_size / heads (64 / 4 = 16)
    return transformers.Qwen3Config(**shape, head_dim=32, tie_word_embeddings=True)


def random_model(architecture: str, vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(_config(architecture, vocab_size)).eval()
    with torch.no_grad():  # every tensor random, norms included: a misplaced tensor cannot go unnoticed
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape) * (0.3 if parameter.dim() > 1 else 1.0)
                            + (1.0 if parameter.dim() == 1 else 0.0))
    return model


def _llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`: rotary halves interleaved, per head.
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_tensors(model, architecture: str):
    """The model's tensors under llama.cpp's names (`blk.N.attn_q.weight`, ...), as llama.cpp stores them."""
    config = model.config
    state = {name: tensor.detach().numpy().astype(np.float32) for name, tensor in model.state_dict().items()}
    tensors = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    if not config.tie_word_embeddings:
        tensors["output.weight"] = state["lm_head.weight"]
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            for suffix in ("weight", "bias"):
                key = f"model.layers.{layer}.{hf_name}.{suffix}"
                if key not in state:
                    continue
                value = state[key]
                if architecture == "llama" and gguf_name == "attn_q":
                    value = _llama_cpp_permute(value, config.num_attention_heads)
                elif architecture == "llama" and gguf_name == "attn_k":
                    value = _llama_cpp_permute(value, config.num_key_value_heads)
                tensors[f"blk.{layer}.{gguf_name}.{suffix}"] = np.ascontiguousarray(value)
    return tensors


def write_gguf(path: Path, architecture: str = "llama", *, pre: str = "smollm", model=None, tokenizer=None,
               add_bos: bool = False, chat_template: str = CHAT_TEMPLATE) -> Path:
    """A tiny GGUF as llama.cpp writes one; `model` (a torch model) supplies the tensors, if given."""
    tokenizer = tokenizer or reference_tokenizer(pre)
    tokens, types, merges = _vocabulary(tokenizer)
    writer = GGUFWriter(str(path), architecture)
    writer.add_name("tiny test model")
    writer.add_file_type(0)  # all f32
    if model is not None:
        config = model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(config.num_attention_heads)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
        writer.add_vocab_size(config.vocab_size)
        if architecture == "llama":
            writer.add_rope_dimension_count(head_dim)
        if architecture == "qwen3":
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
    else:
        writer.add_context_length(256)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(IM_START))
    writer.add_eos_token_id(tokens.index(IM_END))
    writer.add_unk_token_id(tokens.index(END_OF_TEXT))
    writer.add_pad_token_id(tokens.index(IM_END))
    writer.add_add_bos_token(add_bos)
    writer.add_chat_template(chat_template)
    for name, tensor in (_gguf_tensors(model, architecture) if model is not None else
                         {"token_embd.weight": np.zeros((len(tokens), 8), np.float32)}).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
