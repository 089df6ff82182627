"""An EAGLE head written in the published checkpoint format, independently of the package.

`write_published_head(target_config, folder)` saves a random head the way published EAGLE heads ship
(config.json plus model.safetensors or pytorch_model.bin) and returns `PublishedEagleHead`, a module laid out as
the original code lays it out, with a hand-written forward to compare the package's head against.
"""

import json

import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding


class PublishedEagleHead(nn.Module):
    """An EAGLE head written the way the original code lays it out, independently of the package: `fc` on
    `[embedding, feature]`, one LLaMA decoder layer whose input norm is skipped, the target's lm_head."""

    def __init__(self, config: LlamaConfig, with_embeddings: bool, fc_bias: bool = True):
        super().__init__()
        config._attn_implementation = "eager"
        if with_embeddings:
            self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.fc = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=fc_bias)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, layer_idx=0)])
        del self.layers[0].input_layernorm
        self.rotary = LlamaRotaryEmbedding(config)

    def reference_forward(self, embeddings, features, lm_head_weight):
        """Causal forward over a whole sequence, written out by hand."""
        layer = self.layers[0]
        hidden = self.fc(torch.cat([embeddings, features], dim=-1))
        length = hidden.shape[1]
        positions = torch.arange(length)[None]
        cos, sin = self.rotary(hidden, positions)
        attention = layer.self_attn
        head_dim = attention.head_dim
        q = attention.q_proj(hidden).view(1, length, -1, head_dim).transpose(1, 2)
        k = attention.k_proj(hidden).view(1, length, -1, head_dim).transpose(1, 2)
        v = attention.v_proj(hidden).view(1, length, -1, head_dim).transpose(1, 2)

        def rotate(x):
            half = x.shape[-1] // 2
            return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

        q = q * cos[:, None] + rotate(q) * sin[:, None]
        k = k * cos[:, None] + rotate(k) * sin[:, None]
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        scores = q @ k.transpose(-1, -2) / head_dim**0.5
        scores = scores.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, length, -1)
        hidden = hidden + attention.o_proj(attended)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return hidden, hidden @ lm_head_weight.T


def write_published_head(target_config, folder, seed=0, fmt="safetensors", with_embeddings=False, fc_bias=True,
                         scale=1.0, qkv_bias=False):
    """Write a random EAGLE head for `target_config` in the published format; return the torch module.

    `qkv_bias`: q/k/v projections with biases (a head for a Qwen2-like target), under a config that does not say so,
    as such heads ship."""
    config = LlamaConfig(
        vocab_size=target_config.vocab_size, hidden_size=target_config.hidden_size,
        intermediate_size=target_config.intermediate_size, num_hidden_layers=1,
        num_attention_heads=target_config.num_attention_heads,
        num_key_value_heads=target_config.num_key_value_heads,
        max_position_embeddings=target_config.max_position_embeddings, rms_norm_eps=target_config.rms_norm_eps,
        attention_bias=qkv_bias,
    )
    torch.manual_seed(seed)
    module = PublishedEagleHead(config, with_embeddings, fc_bias).eval()
    if qkv_bias:
        module.layers[0].self_attn.o_proj.bias = None
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(scale)
    folder.mkdir(parents=True, exist_ok=True)
    config_dict = config.to_dict()
    config_dict.pop("_attn_implementation", None)
    config_dict.pop("attention_bias", None)
    (folder / "config.json").write_text(json.dumps(config_dict))
    state = {name: tensor.contiguous() for name, tensor in module.state_dict().items()
             if not name.startswith("rotary")}
    assert "fc.weight" in state and "layers.0.self_attn.q_proj.weight" in state
    assert not any("input_layernorm" in name for name in state)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, folder / "model.safetensors")
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return module
