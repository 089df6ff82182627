"""A draft model that scores part of the vocabulary: its `lm_head` multiplies only the rows of the tokens it may draft.

A small draft of a small target spends most of a step in `lm_head` (for SmolLM2-135M, 49152 x 576 weights read per
token, against four decoder layers of 3.5M). Tokens the target almost never writes need no score from the draft: it
only proposes, and verification keeps the output the target's own whatever it proposes. `restrict_vocabulary`
rewrites an exported draft graph so `lm_head` scores `token_ids` only and every other token gets a very low logit,
with the graph's inputs and outputs unchanged (`logits` stays `[batch, rows, vocab]`): optimum-intel,
`OVSpeculativeModelForCausalLM(draft_model=...)` and openvino-genai's draft mode load it as any draft. EAGLE-3 heads
draft over a reduced vocabulary for the same reason.
"""

from typing import Sequence

import numpy as np

from .logits_rows import lm_head_matmul

# Far below any real logit, finite (softmax and sampling stay NaN-free) and exact in f16 and bf16 (IRs are saved with
# f16 constants by default; -1e9 would become -inf there).
EXCLUDED_LOGIT = -1e4
VOCABULARY_RT_INFO = "dynexec_draft_vocabulary_size"


def most_chosen_tokens(choices: np.ndarray, count: int, vocab_size: int) -> np.ndarray:
    """The `count` tokens that occur most often in `choices` (the target's own next tokens over some text), sorted by
    id: the vocabulary a drafter that scores only part of it keeps (this module's drafts, EAGLE-3 heads)."""
    counts = np.bincount(np.asarray(choices).ravel(), minlength=vocab_size)
    return np.sort(np.argsort(-counts, kind="stable")[:count])


def restrict_vocabulary(ov_model, token_ids: Sequence[int]):
    """Rewrite `ov_model` (an exported causal LM, changed in place and returned) so its `lm_head` computes the logits
    of `token_ids` only; the others read `EXCLUDED_LOGIT`. The output keeps its shape and name.

    The kept rows are gathered from `lm_head`'s weight once (constant-folded when the model compiles); a gather over
    the vocabulary then places each score at its token id. Raises `ValueError` for ids outside the vocabulary or a
    graph restricted already.
    """
    import openvino.opset13 as opset

    if ov_model.has_rt_info(VOCABULARY_RT_INFO):
        raise ValueError("This draft graph scores a restricted vocabulary already; restrict the original export.")
    lm_head = lm_head_matmul(ov_model)
    transpose_b = lm_head.get_attributes()["transpose_b"]
    weight = lm_head.input(1).get_source_output()
    vocab = weight.get_partial_shape()[0 if transpose_b else 1].get_length()
    ids = np.unique(np.asarray(token_ids, dtype=np.int64))
    if len(ids) == 0 or ids[0] < 0 or ids[-1] >= vocab:
        raise ValueError(f"`token_ids` must be ids in [0, {vocab}) (the draft's vocabulary), got {len(ids)} ids "
                         f"from {ids[:1].tolist()} to {ids[-1:].tolist()}.")
    rows = opset.gather(weight, opset.constant(ids), axis=0 if transpose_b else 1)
    scores = opset.matmul(lm_head.input(0).get_source_output(), rows, transpose_a=False, transpose_b=transpose_b)
    # One extra column holds the excluded logit; token t reads column `column_of[t]` (its score, or that column).
    first = opset.slice(scores, np.array([0]), np.array([1]), np.array([1]), np.array([-1]))
    excluded = opset.add(opset.multiply(first, np.array(0, dtype=np.float32)), np.array(EXCLUDED_LOGIT, np.float32))
    padded = opset.concat([scores, excluded], axis=-1)
    column_of = np.full(vocab, len(ids), dtype=np.int64)
    column_of[ids] = np.arange(len(ids))
    logits = opset.gather(padded, opset.constant(column_of), axis=-1)
    for target in list(lm_head.output(0).get_target_inputs()):
        target.replace_source_output(logits.output(0))
    ov_model.set_rt_info(int(len(ids)), VOCABULARY_RT_INFO)
    ov_model.validate_nodes_and_infer_types()
    return ov_model
