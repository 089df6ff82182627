"""A single sequence decoded on the paged-attention form of a causal LM: rolling the cache back is free.

optimum-intel's stateful graph keeps the KV cache in OpenVINO variables, which can only be read or written whole;
`kv_cache.DecoderSession` therefore masks rejected drafts instead of removing them. OpenVINO can rewrite the same
graph into the form its serving stack runs (openvino-genai's continuous batching, OpenVINO Model Server): every
`ScaledDotProductAttention` becomes a `PagedAttentionExtension` that reads and writes a KV cache held in blocks,
passed in as ordinary tensors, with the sequence's length (`past_lens`) as an input. Here the session owns those
tensors, so forgetting rejected drafts is setting a smaller length: the next call overwrites their slots.

The CPU plugin's paged-attention kernel also verifies a handful of drafted tokens for about the cost of one token,
where the stateful graph's attention does not (docs/benchmarks.md, "Speculative generation"). And the rewrite lets
`lm_head` score only the rows a call needs (`logits_rows`): a prompt's last row, a verification's every row.

A new generation keeps what the cache already holds of its prompt (`start`): a chat's next turn, a regenerated
answer or a shared system prompt runs only the new part of the prompt, as openvino-genai's pipelines do.

Not every graph can be rewritten: stateless exports have no variables to replace, and a graph that counts
positions by cache slot (ALiBi without `position_ids`, as MPT's) would be placed wrongly. `paged_graph` returns
`None` for those, and the caller keeps `DecoderSession`.
"""

from typing import Optional

import numpy as np
import openvino as ov

from .logits_rows import LOGITS_ROWS_INPUT, with_logits_rows


FEATURES_OUTPUT = "hidden_states"  # what EAGLE heads draft from, when the graph has it


_CACHE_INPUT_PREFIXES = ("key_cache.", "value_cache.")


def paged_graph(model: ov.Model) -> Optional[ov.Model]:
    """The paged-attention rewrite of optimum-intel's stateful decoder graph `model` (a copy; `model` is untouched)
    with a `logits_rows` input, or `None` when the graph cannot be decoded exactly in that form."""
    from openvino._offline_transformations import paged_attention_transformation

    names = {name for port in model.inputs for name in port.get_names()}
    if "position_ids" not in names or not model.get_variables():
        return None
    paged = model.clone()
    try:
        paged_attention_transformation(paged)
    except RuntimeError:  # a graph the rewrite does not recognise: keep the stateful session
        return None
    if not any(port.get_any_name().startswith(_CACHE_INPUT_PREFIXES) for port in paged.inputs):
        return None
    return with_logits_rows(paged, row_axis=0)


class PagedDecoderSession:
    """Decode one sequence (batch size 1) with a compiled `paged_graph`; same interface as `DecoderSession`.

    Args:
        compiled (`openvino.CompiledModel`): the compiled `paged_graph`. The session creates its own infer request
            and owns the KV cache blocks.
        capacity (`int`): tokens the cache holds before it first grows (it doubles when a sequence outgrows it).
        pad (`bool`): pad calls that score every row to one size (see `append`); `False` runs each call at its own
            size, to measure what padding saves.

    `length` is the number of tokens of the sequence currently held by the cache.
    """

    def __init__(self, compiled: ov.CompiledModel, capacity: int = 1024, pad: bool = True):
        self.request = compiled.create_infer_request()
        self._cache_ports = [port for port in compiled.inputs if port.get_any_name().startswith(_CACHE_INPUT_PREFIXES)]
        # The plugin fixes every cache dimension but the number of blocks: [blocks, kv heads, block size, head size]
        # on CPU, in the element type it chose (the KV cache precision).
        self._block_size = self._cache_ports[0].get_partial_shape()[2].get_length()
        self._ports = {port.get_any_name(): port for port in compiled.inputs}
        # EAGLE's chain target also outputs the features its head drafts from (`eagle.target_with_feature_output`).
        self._features_port = next((port for port in compiled.outputs if FEATURES_OUTPUT in port.get_names()), None)
        self._rows = 0  # real rows of the last call
        self._blocks = 0
        self._block_indices = np.zeros(0, dtype=np.int32)
        self._tokens = np.zeros(0, dtype=np.int64)  # the token in each cache slot, up to `length`
        # Inputs whose values do not depend on the call, allocated once.
        self._past_lens = np.zeros(1, dtype=np.int32)
        self._subsequence_begins = np.zeros(2, dtype=np.int32)
        self._block_indices_begins = np.zeros(2, dtype=np.int32)
        self._max_context_len = np.zeros((), dtype=np.int32)
        self._pad = pad
        self._padded_rows = 1  # the size scored calls are padded to (see `append`)
        self.length = 0
        self._grow(max(1, -(-capacity // self._block_size)))

    def reset(self) -> None:
        """Forget the whole sequence (a new generation starts)."""
        self.length = 0
        self._padded_rows = 1

    def start(self, prompt: np.ndarray) -> int:
        """Begin a sequence that opens with `prompt`: keep the longest prefix of it the cache already holds, but
        never the last prompt token (its logits are needed). Returns how many prompt tokens are kept; the caller
        appends the rest.

        The kept keys and values were computed by earlier calls of the same graph on the same tokens at the same
        positions; only the grouping of tokens into calls differs from a fresh prefill, as it does between plain
        decoding and any verification call.
        """
        self._padded_rows = 1
        held = self._tokens[: min(self.length, len(prompt) - 1)]
        differs = np.flatnonzero(held != prompt[: len(held)])
        self.length = int(differs[0]) if len(differs) else len(held)
        return self.length

    def rollback(self, length: int) -> None:
        """Keep only the first `length` tokens of the sequence in the cache."""
        if length > self.length or length < 0:
            raise ValueError(f"Cannot roll back to length {length}: the cache holds {self.length} tokens.")
        self.length = length

    @property
    def masked_slots(self) -> int:
        """Always 0: rolled-back tokens are overwritten, never kept (the `DecoderSession` interface)."""
        return 0

    def append(self, tokens: np.ndarray, last_logits_only: bool = False) -> np.ndarray:
        """Run `tokens` (1D int64) after the cached sequence; return their logits, `[len(tokens), vocab]` (`[1, vocab]`
        for the last token alone with `last_logits_only`). A view of the request's output, valid until the next call.

        Calls that score every row (verifications, single steps) run at least as many rows as the largest such call
        of the sequence so far: the CPU plugin re-plans a request whenever its input shape changes, which costs
        more than the extra rows. The padding rows repeat the last token after the real ones, so no real row sees
        them, and their cache slots lie past `length`, where the next call overwrites them.
        """
        count = len(tokens)
        rows = count if last_logits_only else max(count, self._padded_rows)
        if not last_logits_only and self._pad:
            self._padded_rows = rows
        if rows > count:
            tokens = np.concatenate([tokens, np.repeat(tokens[-1:], rows - count)])
        start, total = self.length, self.length + rows
        blocks = -(-total // self._block_size)
        if blocks > self._blocks:
            self._grow(max(blocks, 2 * self._blocks))
        self._past_lens[0] = start
        self._subsequence_begins[1] = rows
        self._block_indices_begins[1] = blocks
        self._max_context_len[()] = total
        feeds = {
            "input_ids": np.ascontiguousarray(tokens, dtype=np.int64),
            "position_ids": np.arange(start, total, dtype=np.int64),
            "past_lens": self._past_lens,
            "subsequence_begins": self._subsequence_begins,
            "block_indices_begins": self._block_indices_begins,
            "block_indices": self._block_indices[:blocks],
            "max_context_len": self._max_context_len,
            LOGITS_ROWS_INPUT: np.array([count - 1]) if last_logits_only else np.arange(rows),
        }
        request, ports = self.request, self._ports
        for name, value in feeds.items():
            request.set_tensor(ports[name], ov.Tensor(value, shared_memory=True))
        request.infer()
        self._tokens[start:total] = tokens
        self.length = start + count
        self._rows = count
        logits = request.get_output_tensor(0).data
        return logits.reshape(logits.shape[0], logits.shape[-1])[: 1 if last_logits_only else count]

    @property
    def has_features(self) -> bool:
        """Whether the graph outputs `hidden_states` (EAGLE's features) next to the logits."""
        return self._features_port is not None

    def features(self) -> np.ndarray:
        """The last call's `hidden_states`, `[rows, hidden]`, one row per token it ran (with `last_logits_only` too).
        A view of the request's output, valid until the next call."""
        features = self.request.get_tensor(self._features_port).data
        return features.reshape(-1, features.shape[-1])[: self._rows]

    def _grow(self, blocks: int) -> None:
        """Give the cache `blocks` blocks, keeping what it holds (a new generation's first call mostly allocates)."""
        for port in self._cache_ports:
            shape = [blocks] + [dim.get_length() for dim in list(port.get_partial_shape())[1:]]
            grown = ov.Tensor(port.get_element_type(), shape)
            if self._blocks and self.length:
                old = self.request.get_tensor(port)
                # Copy raw bytes: numpy has no bf16, and the block layout is the same in both tensors.
                grown_bytes = grown.data.view(np.uint8).reshape(blocks, -1)
                grown_bytes[: self._blocks] = old.data.view(np.uint8).reshape(self._blocks, -1)
            self.request.set_tensor(port, grown)
        self._blocks = blocks
        self._block_indices = np.arange(blocks, dtype=np.int32)
        self._tokens = np.concatenate([self._tokens, np.zeros(blocks * self._block_size - len(self._tokens), np.int64)])


def decoder_session_for(ov_model):
    """The session to speculate on with an `optimum.intel.OVModelForCausalLM` (target or draft): a
    `PagedDecoderSession` on its paged rewrite when the graph allows it, else a `DecoderSession` on its own request.

    The paged graph is compiled with the model's `ov_config` and the same crash-free properties as its own graph
    (`openvino_cpu.crash_free`). The session is kept on `ov_model` and returned again while the graph, device and
    `ov_config` (and, for `DecoderSession`, the compiled request) stay the same.
    """
    from ..openvino_cpu import crash_free
    from .kv_cache import DecoderSession

    graph = getattr(ov_model, "model", None)
    pageable = bool(ov_model.stateful) and isinstance(graph, ov.Model)
    key = (id(graph), ov_model._device, repr(sorted((ov_model.ov_config or {}).items())))
    kept = getattr(ov_model, "_dynexec_session", None)
    if kept is not None and kept[0] == key and (
        isinstance(kept[1], PagedDecoderSession) or kept[1].request is ov_model.request
    ):
        return kept[1]
    paged = paged_graph(graph) if pageable and (kept is None or kept[0] != key) else None
    if paged is not None:
        properties = crash_free(ov_model.ov_config, ov_model._device, stateful_graph=True)
        session = PagedDecoderSession(ov.Core().compile_model(paged, ov_model._device, properties))
    else:
        session = DecoderSession.for_model(ov_model)
    ov_model._dynexec_session = (key, session)
    return session
