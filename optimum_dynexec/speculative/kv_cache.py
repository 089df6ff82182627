"""A single sequence decoded by an OpenVINO causal LM, with a KV cache that can be rolled back.

Speculative decoding appends draft tokens to the cache and must forget the rejected ones. Stateful graphs that take
`position_ids` speculate on their paged-attention rewrite instead (`paged_session.py`, where rollback is free); this
module serves the rest, and EAGLE's tree verification. The two export forms need different mechanics:

* **Stateful** (optimum-intel's default): the KV cache lives inside the compiled model as OpenVINO variables.
  Reading and writing those variables copies (and, at bf16/u8 cache precision, converts) the whole cache, which for a
  few hundred cached tokens costs more than a decoding step. So rejected entries are never
  copied out; they stay in the cache and are *masked*: the 2D `attention_mask` input carries a 0 in their slot and
  `position_ids` are given explicitly, so every later query ignores them exactly (softmax weight 0), as if they had
  been trimmed. The cost is that masked slots still occupy memory and attention bandwidth, bounded by the number
  of rejected draft tokens. Two exceptions, where the graph reads a token's cache slot as its position: a model
  whose layers attend within a sliding window (Mistral, Qwen2 with `use_sliding_window`, GPT-Neo's local layers,
  ...) places that window by slot, so a masked slot inside it would push a real token out; and a graph without a
  `position_ids` input may count positions by slot (MPT's ALiBi does; BLOOM's counts the mask). There the session
  rewrites its state without the masked slots before a call that needs it: once the sequence outgrows the window
  (`attention_window`), and before every call for graphs without `position_ids`.
* **Stateless**: past keys/values are inputs and outputs; the session owns them as numpy arrays and trims them
  by slicing, which is free.

Both expose the same two operations, `append(tokens) -> logits` and `rollback(length)`, so the decoding loop does
not know which export it runs on.
"""

from typing import Dict, List, Optional

import numpy as np
import openvino as ov

from ..openvino_cpu import prepare_to_compile
from .logits_rows import LOGITS_ROWS_INPUT


_SEQUENCE_AXIS = 2  # past key/value layout [batch, heads, sequence, head_dim], as optimum-intel exports them


def attention_window(config) -> Optional[int]:
    """The sliding attention window (in tokens) of a transformers model config, `None` when every layer attends to
    the whole sequence.

    A query at position q sees the keys at positions k with q - k < window (transformers' `sliding_window_overlay`).
    Models that mix full and windowed layers (`layer_types`) return their window: what speculation must keep exact
    is the windowed layers.
    """
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and not any("sliding" in str(kind) for kind in layer_types):
        return None
    window = getattr(config, "sliding_window", None)
    if window is None and "local" in (getattr(config, "attention_layers", None) or ()):  # GPT-Neo's local layers
        window = getattr(config, "window_size", None)
    if window is None or isinstance(window, bool):
        return None
    return int(window) if int(window) > 0 else None


class DecoderSession:
    """Decode one sequence (batch size 1) with an OpenVINO causal LM and roll its KV cache back on demand.

    Args:
        request (`openvino.InferRequest`): an infer request of the compiled causal LM. The session owns its state:
            do not run other sequences on it between `reset()` and the end of a generation.
        stateful (`bool`): whether the model keeps its KV cache in OpenVINO variables (optimum-intel's default).
        window (`int`, *optional*): the model's sliding attention window (`attention_window(config)`); a stateful
            session keeps its window exact by dropping masked slots from the state once the sequence outgrows it.
            A stateful graph without `position_ids` drops them before every call, whatever the window.

    `length` is the number of tokens of the sequence currently held by the cache (its logical length).
    """

    def __init__(self, request: ov.InferRequest, stateful: bool, window: Optional[int] = None):
        self.request = request
        self.stateful = stateful
        self.window = window
        model = request.get_compiled_model()
        # Inputs are bound with set_tensor on shared numpy memory: the generic `infer(dict)` dispatcher costs
        # a large share of a small draft model's step per call.
        self._ports = {port.get_any_name(): port for port in model.inputs}
        self._logits_port = next(i for i, port in enumerate(model.outputs) if "logits" in port.get_names())
        self._past_inputs: List[ov.Output] = [
            port for port in model.inputs if port.get_any_name().startswith("past_key_values")
        ]
        self._present_names = [name.replace("past_key_values", "present") for name in self._past_names()]
        # Masked slots are exact while nothing reads a token's slot as its position: up to the window, and never in
        # a graph that is not told positions (see the module docstring). Past this many slots, drop them first.
        self._dense_beyond = 0 if "position_ids" not in self._ports else window
        # numpy has no bf16: a bf16 cache (optimum-intel's stateless default on bf16 CPUs) is held as float16-typed
        # bits and retyped when bound, which is also how optimum-intel passes it.
        self._past_types = {port.get_any_name(): port.get_element_type() for port in self._past_inputs}
        self.length = 0
        # Stateful bookkeeping: physical cache slots (including masked ones) and where each token lives.
        self._slot_count = 0
        self._slot_mask = np.zeros(1024, dtype=np.int64)
        self._slot_of_position = np.zeros(1024, dtype=np.int64)
        self._past: Dict[str, np.ndarray] = {}
        self.reset()

    @classmethod
    def for_model(cls, ov_model) -> "DecoderSession":
        """A session on the infer request of an `optimum.intel.OVModelForCausalLM` (compiled on demand)."""
        prepare_to_compile(ov_model)
        ov_model.compile()
        return cls(ov_model.request, stateful=ov_model.stateful, window=attention_window(ov_model.config))

    def _past_names(self) -> List[str]:
        return [port.get_any_name() for port in self._past_inputs]

    def reset(self) -> None:
        """Forget the whole sequence (a new generation starts)."""
        self.length = 0
        self._slot_count = 0
        if "beam_idx" in self._ports:
            # Set at every reset: plain `generate()` with a batch (or beams) on the same request leaves a longer one.
            self.request.set_tensor(self._ports["beam_idx"], ov.Tensor(np.zeros(1, dtype=np.int32)))
        if self.stateful:
            self.request.reset_state()
        else:
            self._past = {
                port.get_any_name(): np.zeros(
                    [1 if dim.is_dynamic and axis == 0 else 0 if dim.is_dynamic else dim.get_length()
                     for axis, dim in enumerate(port.get_partial_shape())],
                    dtype=port.get_element_type().to_dtype(),
                )
                for port in self._past_inputs
            }

    def start(self, prompt: np.ndarray) -> int:
        """Begin a sequence that opens with `prompt`: this session keeps nothing between sequences (`reset`), so
        returns 0 (prompt tokens already held; see `PagedDecoderSession.start`)."""
        self.reset()
        return 0

    def append(self, tokens: np.ndarray, last_logits_only: bool = False) -> np.ndarray:
        """Run `tokens` (1D int64) after the cached sequence; return their logits, shape `[len(tokens), vocab]`
        (`[1, vocab]`, the last token's, with `last_logits_only`; this graph still computes every row).

        The returned array is a view of the request's output buffer, valid until the next call.
        """
        count = len(tokens)
        start = self.length
        request, ports = self.request, self._ports
        input_ids = np.ascontiguousarray(tokens, dtype=np.int64).reshape(1, count)
        request.set_tensor(ports["input_ids"], ov.Tensor(input_ids, shared_memory=True))
        if self.stateful:
            if self._dense_beyond is not None and self.masked_slots and self._slot_count + count > self._dense_beyond:
                self._compact()
            slots = self._claim_slots(count)
            self._slot_of_position[start : start + count] = slots
            attention_mask = self._slot_mask[: self._slot_count]
        else:
            attention_mask = np.ones(start + count, dtype=np.int64)
            for name, value in self._past.items():  # contiguous and owned by self._past: shared, never freed early
                if self._past_types[name] == ov.Type.bf16:
                    request.set_tensor(ports[name], ov.Tensor(value, value.shape, ov.Type.bf16))
                else:
                    request.set_tensor(ports[name], ov.Tensor(value, shared_memory=True))
        if "attention_mask" in ports:
            request.set_tensor(ports["attention_mask"], ov.Tensor(attention_mask.reshape(1, -1), shared_memory=True))
        if "position_ids" in ports:
            positions = np.arange(start, start + count, dtype=np.int64).reshape(1, count)
            request.set_tensor(ports["position_ids"], ov.Tensor(positions, shared_memory=True))
        request.infer()
        self.length = start + count
        if not self.stateful:
            # The output buffers are reused by the next call, so the session keeps its own copy.
            self._past = {
                past: self.request.get_tensor(present).data.copy()
                for past, present in zip(self._past_names(), self._present_names)
            }
        logits = self.request.get_output_tensor(self._logits_port).data[0]
        return logits[-1:] if last_logits_only else logits

    def rollback(self, length: int) -> None:
        """Keep only the first `length` tokens of the sequence in the cache."""
        if length > self.length or length < 0:
            raise ValueError(f"Cannot roll back to length {length}: the cache holds {self.length} tokens.")
        if length == self.length:
            return
        if self.stateful:
            self._slot_mask[self._slot_of_position[length : self.length]] = 0
        else:
            self._past = {name: np.ascontiguousarray(value[:, :, :length]) for name, value in self._past.items()}
        self.length = length

    @property
    def masked_slots(self) -> int:
        """Stateful only: cache slots holding rolled-back tokens (kept, but masked out of attention)."""
        return self._slot_count - self.length if self.stateful else 0

    def _compact(self) -> None:
        """Stateful: rewrite the cache without its masked slots, so that slot i holds position i again.

        Copies the whole cache out of and back into the model's state (what masking avoids elsewhere); only
        graphs that read slots as positions need it (windowed models past their window, graphs without
        `position_ids`).
        """
        kept = self._slot_of_position[: self.length].copy()
        for state in self.request.query_state():
            value = state.state.data
            axes = [axis for axis in range(1, value.ndim) if value.shape[axis] == self._slot_count]
            axis = _SEQUENCE_AXIS if _SEQUENCE_AXIS in axes else axes[0] if len(axes) == 1 else None
            if axis is None:
                raise RuntimeError(f"Cannot tell the sequence axis of the KV state {state.name!r} of shape "
                                   f"{list(value.shape)} ({self._slot_count} slots); export the model with "
                                   "`stateful=False` to speculate with it.")
            state.state = ov.Tensor(np.ascontiguousarray(np.take(value, kept, axis=axis)))
        self._slot_mask[: self.length] = 1
        self._slot_of_position[: self.length] = np.arange(self.length)
        self._slot_count = self.length

    def _claim_slots(self, count: int) -> np.ndarray:
        needed = self._slot_count + count
        if needed > len(self._slot_mask):
            capacity = max(needed, 2 * len(self._slot_mask))
            self._slot_mask = np.concatenate([self._slot_mask, np.zeros(capacity - len(self._slot_mask), np.int64)])
            self._slot_of_position = np.concatenate(
                [self._slot_of_position, np.zeros(capacity - len(self._slot_of_position), np.int64)]
            )
        slots = np.arange(self._slot_count, needed)
        self._slot_mask[slots] = 1
        self._slot_count = needed
        return slots


def sequence_axis_is_supported(ov_model) -> Optional[str]:
    """Why a stateless model's past key/values layout is not the `[batch, heads, sequence, head_dim]` one we trim.

    Returns `None` when it is supported.
    """
    for port in ov_model.model.inputs:
        name = port.get_any_name()
        if name.startswith("past_key_values"):
            shape = port.get_partial_shape()
            if shape.rank.get_length() != 4 or not shape[_SEQUENCE_AXIS].is_dynamic:
                return f"past key/value input {name!r} has layout {shape}, expected [batch, heads, sequence, dim]"
    return None


def cache_rounded_to_16_bits(ov_model) -> List[str]:
    """The past key/value inputs of a stateless graph that the graph itself rounds to 16 bits before use.

    optimum-intel gives a stateless model bf16 cache ports when it loads it on a bf16 CPU, and `save_pretrained`
    restores f32 ports by inserting a conversion: the saved IR then rounds every cached key and value to bf16, in
    every later load. Plain decoding rounds each token's keys and values once it is cached, while a verification
    uses the drafted tokens' own unrounded ones within its call, so at near-ties the two can choose differently.
    """
    rounded = []
    for port in ov_model.inputs:
        name = port.get_any_name()
        if name.startswith("past_key_values") and any(
            target.get_node().get_type_name() == "Convert"
            and target.get_node().get_output_element_type(0) in (ov.Type.bf16, ov.Type.f16)
            for target in port.get_target_inputs()
        ):
            rounded.append(name)
    return rounded


TREE_MASK_INPUT = "tree_mask"
_MASKED = np.float32(np.finfo(np.float32).min)


def sequence_inputs(**arrays: np.ndarray) -> Dict[str, np.ndarray]:
    """Inputs of a `TreeDecoderSession.run` for one sequence: each array gets the batch axis (`features` as float32,
    everything else as int64)."""
    inputs = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        inputs[name] = (value.astype(np.float32, copy=False) if name == "features" else value.astype(np.int64))[None]
    return inputs


def additive_mask(visible: np.ndarray) -> np.ndarray:
    """Boolean `[n, total]` visibility -> the float `[1, 1, n, total]` additive mask the EAGLE graphs take."""
    return np.where(visible, np.float32(0.0), _MASKED).reshape(1, 1, *visible.shape)


class TreeDecoderSession(DecoderSession):
    """A stateful session whose new rows may each see any subset of the cached and new rows (a draft tree).

    Runs the two EAGLE graphs: the target rewritten by `eagle.target_with_features` (optimum-intel's own stateful
    graph, fused RoPE and SDPA kernels, with a `tree_mask` input in place of its causal mask) and the head from
    `eagle.export_eagle_head`. `tree_mask` is `[1, 1, new rows, cache slots]`, additive. Rows a verification drops
    (or a head's drafts) are masked out of every later call like rolled-back ones, through the same slot
    bookkeeping: `keep(start, rows)` re-points the logical sequence at the slots of the kept rows. The mask
    replaces the graph's own, sliding window included: `window` (the target's `attention_window`) restricts each row
    to keys less than `window` positions behind it, as the model's windowed layers do.
    """

    def __init__(self, request: ov.InferRequest, window: Optional[int] = None):
        super().__init__(request, stateful=True, window=window)
        self._rows = 0  # real (unpadded) rows of the last run
        self._logits_rows = 0  # rows the last run computed logits for
        for name in (TREE_MASK_INPUT, LOGITS_ROWS_INPUT):
            if name not in self._ports:
                raise ValueError(f"The compiled model has no {name!r} input: build it with "
                                 "`eagle.target_with_features` or `eagle.export_eagle_head`.")

    def run(self, inputs: Dict[str, np.ndarray], visible: Optional[np.ndarray] = None,
            pad_to: int = 0, last_logits_only: bool = False) -> ov.InferRequest:
        """Append the rows of `inputs` (`input_ids` and `position_ids` `[1, n]`, and whatever else the graph takes,
        e.g. the head's `features`); return the request. Read its outputs with `outputs(name)`.

        `visible`: `[n, length + n]` booleans, which cached and new rows each new row attends to; `None` is causal.
        `pad_to`: run at least this many rows, the extra ones copies of the last row that only see themselves and
        are masked out at once. OpenVINO's CPU plugin re-plans a request whenever its input shape changes (for a
        small graph, more than the call itself), so a caller whose row counts vary pads them to one size.
        `last_logits_only`: compute `logits` for the last real row alone (`outputs("logits")` is then `[1, vocab]`).
        """
        count, start = inputs["input_ids"].shape[-1], self.length
        if visible is None:
            visible = np.ones((count, start + count), dtype=bool)
            visible[:, start:] = np.tri(count, dtype=bool)
        if self.window is not None:  # the cached rows sit at their own positions, the new ones at `position_ids`
            positions = inputs["position_ids"].reshape(-1)
            distance = positions[:, None] - np.concatenate([np.arange(start), positions])[None, :]
            visible = visible & (distance < self.window)
        padding = max(0, pad_to - count)
        new_slots = self._claim_slots(count + padding)
        self._slot_of_position[start : start + count] = new_slots[:count]
        mask = np.full((1, 1, count + padding, self._slot_count), _MASKED, dtype=np.float32)
        mask[0, 0, :count][:, self._slot_of_position[: start + count]] = additive_mask(visible)[0, 0]
        if padding:
            self._slot_mask[new_slots[count:]] = 0
            mask[0, 0, count:][np.arange(padding), new_slots[count:]] = 0.0
            inputs = {name: np.concatenate([value, np.repeat(value[:, -1:], padding, axis=1)], axis=1)
                      for name, value in inputs.items()}
        self._rows = count
        request, ports = self.request, self._ports
        for name, value in inputs.items():
            request.set_tensor(ports[name], ov.Tensor(np.ascontiguousarray(value), shared_memory=True))
        request.set_tensor(ports[TREE_MASK_INPUT], ov.Tensor(mask, shared_memory=True))
        logits_rows = np.array([count - 1]) if last_logits_only else np.arange(count + padding)
        self._logits_rows = 1 if last_logits_only else count
        request.set_tensor(ports[LOGITS_ROWS_INPUT], ov.Tensor(logits_rows, shared_memory=True))
        if "attention_mask" in ports:  # only its length still matters to the rewritten graph
            request.set_tensor(ports["attention_mask"], ov.Tensor(self._slot_mask[: self._slot_count].reshape(1, -1),
                                                                  shared_memory=True))
        request.infer()
        self.length = start + count
        return request

    def outputs(self, name: str) -> np.ndarray:
        """Output `name` of the last `run` for its real rows, `[n, ...]` (a view, valid until the next run); `logits`
        only for the rows that run computed them for."""
        return self.request.get_tensor(name).data[0, : self._logits_rows if name == "logits" else self._rows]

    def keep(self, start: int, rows: np.ndarray) -> None:
        """Keep the first `start` rows of the sequence, then only `rows` (indices relative to `start`), in order."""
        rows = np.asarray(rows, dtype=np.int64)
        kept = self._slot_of_position[start + rows]
        self._slot_mask[self._slot_of_position[start : self.length]] = 0
        self._slot_mask[kept] = 1
        self._slot_of_position[start : start + len(rows)] = kept
        self.length = start + len(rows)
