"""`transformers.pipeline("text-generation")` on the speculative model speculates and says what plain says."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, pipeline

from helpers.tiny_causal_lm import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, load_speculative, repetitive_prompt, shared_plain


def word_tokenizer() -> PreTrainedTokenizerFast:
    """One word per token id of the tiny models: "w3" is id 3 (ids 0-2 are the special tokens)."""
    vocabulary = {"<pad>": PAD_ID, "<s>": BOS_ID, "</s>": EOS_ID}
    vocabulary.update({f"w{index}": index for index in range(3, VOCAB_SIZE)})
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<pad>")


def _text(token_ids) -> str:
    return " ".join(f"w{token}" for token in token_ids)


@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup"])
def test_text_generation_pipeline_speculates(tiny_models, drafting):
    target_dir = tiny_models.ir("llama")
    plain = shared_plain(target_dir)
    tokenizer = word_tokenizer()
    assert tokenizer(_text([5, 17, 127]))["input_ids"] == [5, 17, 127]

    if drafting == "draft_model":
        model = load_speculative(target_dir, draft_model=tiny_models.ir("llama-draft"))
        prompt, extra = "w5 w17 w9 w40 w33 w100 w12", {}
    else:
        model = load_speculative(target_dir)
        prompt, extra = _text(repetitive_prompt(plain, seed=60)[0].tolist()), dict(prompt_lookup_num_tokens=6)

    expected = pipeline("text-generation", model=plain, tokenizer=tokenizer)(prompt, max_new_tokens=24, do_sample=False)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    output = generator(prompt, max_new_tokens=24, do_sample=False, **extra)
    assert output == expected
    assert output[0]["generated_text"].startswith(prompt) and len(output[0]["generated_text"]) > len(prompt)

    stats = model.last_decoding_stats
    assert stats is not None and stats.new_tokens == 24
    assert len(stats.accepted_lengths) > 0 and stats.accepted_tokens > 0, "the pipeline call did not speculate"
    assert stats.target_calls < stats.new_tokens
