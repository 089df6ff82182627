"""Fixtures shared by tests/speculative/ modules: EAGLE targets and heads that more than one module needs.

Each is module-scoped, so every module that asks for one builds its own, as when the modules defined them.
"""

import pytest
import torch
from helpers.published_eagle_head import write_published_head
from helpers.tiny_causal_lm import SMALL_VOCAB_SIZE, load_speculative
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 16-token-vocabulary target with moderately spread logits (distributions worth testing) and a head.

    Used by test_eagle_decoding.py and test_robustness.py (EAGLE sampling is distributed as the target's)."""
    folder = tmp_path_factory.mktemp("small")
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=SMALL_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch_model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        spread = torch_model(torch.arange(3, 16)[None]).logits.std()
        torch_model.lm_head.weight.mul_(1.5 / spread)
    target_dir = folder / "target"
    torch_model.save_pretrained(target_dir)
    head_dir = folder / "head"
    write_published_head(AutoConfig.from_pretrained(target_dir), head_dir, seed=3)
    model = load_speculative(target_dir, export=True, eagle_head=head_dir)
    return target_dir, model


@pytest.fixture(scope="module")
def text_target(tmp_path_factory):
    """A tiny target with a real tokenizer (trained on a few stdlib files), and those files as training text.

    Used by test_eagle_head.py (training a head) and test_eagle_decoding.py (the text-generation pipeline)."""
    from lab.fixtures import corpus
    from lab.fixtures.causal_lm import train_tokenizer

    folder = tmp_path_factory.mktemp("text_target")
    texts = [source.text for source in corpus.list_source_files()[:30]]
    tokenizer = train_tokenizer(texts, 300, 512, progress=False)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # sharper logits: a target with preferences the head can learn
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(folder / "target")
    tokenizer.save_pretrained(folder / "target")
    text_file = folder / "train.txt"
    text_file.write_text("\f".join(texts))
    return folder / "target", texts, text_file
