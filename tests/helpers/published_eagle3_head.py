"""An EAGLE-3 head written in the published Hugging Face layout, independently of the package.

`write_published_eagle3_head(target_config, folder, feature_layers, draft_tokens)` saves random weights under the
names SpecForge / AngelSlim heads ship (`fc.weight`, `midlayer.*`, `norm.weight`, `lm_head.weight`, `d2t`, `t2d`,
`embed_tokens.weight`) with a `LlamaForCausalLMEagle3` config, and returns `PublishedEagle3Head`: the same tensors
with a forward written out by hand from the EAGLE-3 paper's description, to compare the package's head against.
"""

import json

import torch


class PublishedEagle3Head:
    """Plain tensors and a hand-written causal forward over a whole sequence."""

    def __init__(self, tensors: dict, config: dict):
        self.tensors = tensors
        self.config = config

    def draft_to_target(self):
        d2t = self.tensors["d2t"]
        return torch.arange(len(d2t)) + d2t

    def reference_forward(self, embeddings, features):
        """`(next features before norm, draft-vocabulary logits)` for `[1, n, hidden]` embeddings and features
        (fused target features, `3 * hidden` wide, or the head's own, `hidden` wide)."""
        w, config = self.tensors, self.config
        eps = config["rms_norm_eps"]
        heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
        head_dim = config["hidden_size"] // heads

        def rms(x, weight):
            return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)

        if features.shape[-1] != config["hidden_size"]:
            features = features @ w["fc.weight"].T
        both = torch.cat([rms(embeddings, w["midlayer.input_layernorm.weight"]),
                          rms(features, w["midlayer.hidden_norm.weight"])], dim=-1)
        length = both.shape[1]
        q = (both @ w["midlayer.self_attn.q_proj.weight"].T).view(1, length, heads, head_dim).transpose(1, 2)
        k = (both @ w["midlayer.self_attn.k_proj.weight"].T).view(1, length, kv_heads, head_dim).transpose(1, 2)
        v = (both @ w["midlayer.self_attn.v_proj.weight"].T).view(1, length, kv_heads, head_dim).transpose(1, 2)
        inverse = 1.0 / (config["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.arange(length).float()[:, None] * inverse[None]
        cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

        def rotate(x):
            half = x.shape[-1] // 2
            return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

        q, k = q * cos + rotate(q) * sin, k * cos + rotate(k) * sin
        k, v = k.repeat_interleave(heads // kv_heads, dim=1), v.repeat_interleave(heads // kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) / head_dim**0.5
        scores = scores.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, length, -1)
        hidden = features + attended @ w["midlayer.self_attn.o_proj.weight"].T
        normed = rms(hidden, w["midlayer.post_attention_layernorm.weight"])
        gate = normed @ w["midlayer.mlp.gate_proj.weight"].T
        hidden = hidden + (torch.nn.functional.silu(gate) * (normed @ w["midlayer.mlp.up_proj.weight"].T)) @ \
            w["midlayer.mlp.down_proj.weight"].T
        return hidden, rms(hidden, w["norm.weight"]) @ w["lm_head.weight"].T


def write_published_eagle3_head(target_config, folder, feature_layers, draft_tokens, seed=0, scale=1.0,
                                embeddings=None, prefix=""):
    """Write a random EAGLE-3 head for `target_config` drafting over `draft_tokens` (sorted target ids) and fusing
    `feature_layers`; return its `PublishedEagle3Head`. `prefix` ("model.") writes the keys as some exports do."""
    generator = torch.Generator().manual_seed(seed)
    hidden = target_config.hidden_size
    heads, kv_heads = target_config.num_attention_heads, target_config.num_key_value_heads
    head_dim = hidden // heads
    inner = target_config.intermediate_size
    draft_tokens = torch.as_tensor(sorted(draft_tokens), dtype=torch.long)

    def random(*shape, std=0.05):
        return torch.randn(*shape, generator=generator) * std * scale

    tensors = {
        "fc.weight": random(hidden, 3 * hidden),
        "midlayer.hidden_norm.weight": 1 + random(hidden),
        "midlayer.input_layernorm.weight": 1 + random(hidden),
        "midlayer.post_attention_layernorm.weight": 1 + random(hidden),
        "midlayer.self_attn.q_proj.weight": random(heads * head_dim, 2 * hidden, std=0.2),
        "midlayer.self_attn.k_proj.weight": random(kv_heads * head_dim, 2 * hidden, std=0.2),
        "midlayer.self_attn.v_proj.weight": random(kv_heads * head_dim, 2 * hidden, std=0.2),
        "midlayer.self_attn.o_proj.weight": random(hidden, heads * head_dim, std=0.2),
        "midlayer.mlp.gate_proj.weight": random(inner, hidden, std=0.2),
        "midlayer.mlp.up_proj.weight": random(inner, hidden, std=0.2),
        "midlayer.mlp.down_proj.weight": random(hidden, inner, std=0.2),
        "norm.weight": 1 + random(hidden),
        "lm_head.weight": random(len(draft_tokens), hidden, std=1.0),
        "d2t": draft_tokens - torch.arange(len(draft_tokens)),
        "t2d": torch.zeros(target_config.vocab_size, dtype=torch.bool).index_fill(0, draft_tokens, True),
    }
    if embeddings is not None:
        tensors["embed_tokens.weight"] = embeddings.detach().float().clone()
    rope_theta = (getattr(target_config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    config = {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": inner, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "num_hidden_layers": 1, "vocab_size": target_config.vocab_size, "draft_vocab_size": len(draft_tokens),
        "rms_norm_eps": target_config.rms_norm_eps, "rope_theta": rope_theta,
        "max_position_embeddings": target_config.max_position_embeddings, "tie_word_embeddings": False,
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": list(feature_layers)},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file({prefix + name: tensor.contiguous() for name, tensor in tensors.items()}, folder / "model.safetensors")
    return PublishedEagle3Head(tensors, config)
