"""`OVEarlyExitModelForSequenceClassification`: an OpenVINO sequence classifier that stops at the first confident layer.

Data flow of one call: tokens -> (embeddings +) layer 1 -> for each next layer segment: run only the rows alive,
take the exit's logits and their (temperature-scaled, normalised) entropy, retire the rows under the threshold,
compact the batch (and trim padding nobody needs any more) -> the logits of the layer each row left at.
Rows never wait for slower rows, and a row's result does not depend on what else is in its batch.
A single row takes one OpenVINO call instead: the same segments chained into one graph whose exits are `If` ops
(`single_row_graph.py`), as the fixed cost of a call is a large share of a layer at batch 1.

Every argument is checked before it reaches OpenVINO (shapes, dtypes, token ids within the vocabulary, lengths within
the position embeddings, 0/1 masks): OpenVINO would otherwise fail deep inside a kernel or, for an out-of-range id,
silently embed zeros.
"""

import os
import reprlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import openvino
import torch
from optimum.intel import OVModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from ..utils.io import atomic_save_into, remove_abandoned_staging
from ..utils.model_files import openvino_error_reason
from .config import REBUILD_HINT, EarlyExitConfig, validate_entropy_threshold
from .entropy import normalised_entropies
from .export import (
    export_early_exit,
    load_segments,
    quantize_segments,
    save_segments,
    segment_names,
)
from .single_row_graph import THRESHOLD_INPUT, RowGraphs, build_single_row_graph


@dataclass
class EarlyExitSequenceClassifierOutput(SequenceClassifierOutput):
    """`SequenceClassifierOutput` plus `exit_layers`: the 1-based layer each row left at (when requested)."""

    exit_layers: Optional[Union[torch.Tensor, np.ndarray]] = None


@dataclass
class EarlyExitCallStats:
    """What one `forward` ran: `openvino_calls` (single-row graph and segment calls), and `rows_rerun_on_segments`,
    the single rows whose entropy lay within the single-row graph's decision margin of the threshold and were decided
    again on the segments (as the calibration decides)."""

    openvino_calls: int = 0
    rows_rerun_on_segments: int = 0


class OVEarlyExitModelForSequenceClassification(OVModelForSequenceClassification):
    """OpenVINO sequence classifier with entropy-gated early exit, run segment by segment.

    Load a folder exported from a `train-exits` checkpoint (or export one with `export=True`)::

        model = OVEarlyExitModelForSequenceClassification.from_pretrained(folder, entropy_threshold=0.2)
        outputs = model(**tokenizer(texts, padding=True, return_tensors="np"), output_exit_layers=True)

    Keyword-only arguments added to optimum-intel's: `entropy_threshold` (default: the saved one), a real number in
    [0, 1]: a row exits at the first layer whose prediction entropy divided by log(num_labels) is below it.
    Single rows run as one graph; rows of up to 8 x `max_fixed_length_graphs` tokens run on a graph compiled for
    their length padded to a multiple of 8 (all compiled with the model: set it before compiling, e.g. on the class or
    with `compile=False`; each such graph costs a copy of the weights in memory).
    `quantization_config=` / `load_in_8bit=` apply to the full model and to every segment.

    Threads: one model object may be called from several threads at once. Its calls are serialised by a lock held
    for the whole call (the infer requests, and the inputs bound to them, belong to the object), so each call gives
    exactly the result it gives alone. For calls that run in parallel, load one model object per thread (OpenVINO's
    CPU plugin already spreads one call over all cores, so parallel calls mostly pay off with a few threads each,
    `ov_config={"INFERENCE_NUM_THREADS": ...}`), or pass the texts as one batch. `copy.deepcopy(model)` gives an
    independent object (with its own lock and requests).
    """

    # How many single-row graphs compiled for one fixed (padded) length, 8, 16, ... tokens, to keep beside the dynamic
    # one (`single_row_graph.RowGraphs`): each holds a copy of the weights; 0 keeps only the dynamic graph.
    max_fixed_length_graphs = 4

    def __init__(
        self,
        model=None,
        config=None,
        *,
        early_exit_config: Optional[EarlyExitConfig] = None,
        exit_segments: Optional[Dict] = None,
        entropy_threshold: Optional[float] = None,
        **kwargs,
    ):
        if early_exit_config is None or exit_segments is None:
            raise ValueError(
                "OVEarlyExitModelForSequenceClassification needs its exits: build it with `from_pretrained(folder)` "
                "on a folder holding `exits/` and `early_exit_config.json` (export one with `export=True`)."
            )
        if entropy_threshold is not None:
            entropy_threshold = validate_entropy_threshold(entropy_threshold)
        self.early_exit_config = early_exit_config
        self.exit_segments = exit_segments
        self._segment_requests = None
        self._row_graphs = None
        self.last_forward_stats: Optional[EarlyExitCallStats] = None
        # Re-entrant: `forward` holds it and calls `compile`, which takes it too (so a lazy compile from two threads
        # happens once).
        self._call_lock = threading.RLock()
        first_segment = exit_segments[segment_names(early_exit_config.num_layers)[0]]
        self._takes_token_type_ids = any("token_type_ids" in port.get_names() for port in first_segment.inputs)
        super().__init__(model, config, **kwargs)
        if entropy_threshold is not None:
            self.entropy_threshold = entropy_threshold

    def __getstate__(self):
        # Infer requests cannot be copied or pickled, and a copy must not share this object's lock: a copy compiles
        # its own requests on first use.
        state = self.__dict__.copy()
        state.pop("_call_lock", None)
        state.update(_segment_requests=None, _row_graphs=None, request=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._call_lock = threading.RLock()

    @property
    def entropy_threshold(self) -> float:
        """Default threshold of `forward` (saved by `save_pretrained`)."""
        return self.early_exit_config.entropy_threshold

    @entropy_threshold.setter
    def entropy_threshold(self, value: float) -> None:
        self.early_exit_config.entropy_threshold = validate_entropy_threshold(value)

    @property
    def num_layers(self) -> int:
        return self.early_exit_config.num_layers

    @property
    def compiled_row_lengths(self) -> list:
        """The padded row lengths that have a single-row graph compiled for them (see `max_fixed_length_graphs`),
        ascending; other single rows run on the dynamic-shape graph."""
        return sorted(self._row_graphs.fixed) if self._row_graphs is not None else []

    # ----- loading, exporting, saving -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_id: Union[str, Path], *args, **kwargs):
        """optimum-intel's `from_pretrained` for a local folder: an exported early-exit folder, or with `export=True` a
        `train-exits` checkpoint. Keyword-only addition: `entropy_threshold` (a real number in [0, 1]).

        Raises TypeError/ValueError naming the argument for a `model_id` that is not a local folder, a bad
        `entropy_threshold` or `ov_config`, and ValueError naming the file for a damaged `early_exit_config.json` or
        segment (`exits/layer_<l>.xml/.bin`).
        """
        if not isinstance(model_id, (str, os.PathLike)):
            raise TypeError(f"`model_id` must be a folder path (str or Path), got {type(model_id).__name__}.")
        folder = Path(model_id) / kwargs.get("subfolder", "")
        if not folder.is_dir():
            # optimum would take it for a hub id and fail on the name or the network; exits only load from folders.
            raise ValueError(
                f"`model_id` {str(folder)!r} is not a folder. Early-exit models load from a local folder written by "
                "`save_pretrained` or `optimum-cli export dynexec --task text-classification`, or, with "
                "`export=True`, from a local `optimum-cli dynexec train-exits` checkpoint."
            )
        remove_abandoned_staging(folder)  # what an interrupted save_pretrained left there
        if kwargs.get("entropy_threshold") is not None:
            validate_entropy_threshold(kwargs["entropy_threshold"])
        ov_config = kwargs.get("ov_config")
        if ov_config is not None and not isinstance(ov_config, dict):
            raise TypeError(
                f"`ov_config` must be a dict of OpenVINO properties such as {{'INFERENCE_PRECISION_HINT': 'f32'}}, "
                f"got {type(ov_config).__name__}."
            )
        return super().from_pretrained(model_id, *args, **kwargs)

    @classmethod
    def _from_pretrained(cls, model_id, config, *, entropy_threshold: Optional[float] = None, **kwargs):
        if entropy_threshold is not None:
            entropy_threshold = validate_entropy_threshold(entropy_threshold)
        if kwargs.get("compile_only"):
            raise ValueError(
                "`compile_only=True` is not supported by early exit: the segments and the single-row graph are built "
                "from the OpenVINO models. Load without it."
            )
        folder = Path(model_id) / kwargs.get("subfolder", "")
        if not folder.is_dir():
            raise ValueError(
                f"{model_id!r} is not a local folder. Early-exit models load from a folder written by "
                "`save_pretrained` or `optimum-cli export dynexec`."
            )
        early_exit_config = EarlyExitConfig.load(folder)
        if getattr(config, "num_labels", early_exit_config.num_labels) != early_exit_config.num_labels:
            raise ValueError(
                f"{folder / 'early_exit_config.json'} has {early_exit_config.num_labels} labels but "
                f"{folder / 'config.json'} has {config.num_labels}: the two files come from different models. "
                f"{REBUILD_HINT}"
            )
        exit_segments = load_segments(folder, early_exit_config)
        quantization_config = kwargs.get("quantization_config") or (
            {"bits": 8} if kwargs.get("load_in_8bit") else None
        )
        if quantization_config:
            exit_segments = quantize_segments(exit_segments, quantization_config)
        return super()._from_pretrained(
            model_id,
            config,
            early_exit_config=early_exit_config,
            exit_segments=exit_segments,
            entropy_threshold=entropy_threshold,
            **kwargs,
        )

    @classmethod
    def _export(cls, model_id, config, **kwargs):
        """`from_pretrained(checkpoint, export=True)`: export the full model and the segments, then load them."""
        from tempfile import TemporaryDirectory

        if kwargs.get("entropy_threshold") is not None:  # before the export, which takes a while
            validate_entropy_threshold(kwargs["entropy_threshold"])
        if not (Path(model_id) / "early_exit_config.json").is_file():
            raise ValueError(
                f"{model_id!r} has no trained exits (no early_exit_config.json). Train them first: "
                f"`optimum-cli dynexec train-exits --model {model_id} --dataset <data> --output <dir>`."
            )
        exported_segment = Path(model_id) / "exits" / "layer_1.xml"
        if exported_segment.is_file() and not (Path(model_id) / "exits" / "exit_heads.safetensors").is_file():
            # An exported folder, not a train-exits checkpoint: optimum also lands here when openvino_model.xml is gone.
            full_model = Path(model_id) / "openvino_model.xml"
            if not full_model.is_file():
                raise ValueError(f"{full_model} is missing from this exported early-exit folder. {REBUILD_HINT}")
            raise ValueError(
                f"{model_id!r} is already exported (it holds {exported_segment}, not trained exit heads): load it "
                "without `export=True`."
            )
        for hub_argument in ("token", "revision", "force_download", "cache_dir", "local_files_only", "task"):
            kwargs.pop(hub_argument, None)
        kwargs.pop("trust_remote_code", None)
        save_dir = TemporaryDirectory()
        # The exported files live in this temporary folder; keep it alive as long as the class, like optimum-intel.
        cls._model_save_dir_tempdirectory_instance = save_dir
        export_early_exit(model_id, Path(save_dir.name) / "model")
        return cls._from_pretrained(Path(save_dir.name) / "model", config, **kwargs)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], *args, **kwargs):
        """Write the parent's files plus `exits/` and `early_exit_config.json` into the folder `save_directory`, all
        or nothing (`optimum_dynexec.utils.io`).

        Raises ValueError if `save_directory` (or a folder above it) is an existing file; optimum's own
        `save_pretrained` only logs that and writes nothing.
        """
        if not isinstance(save_directory, (str, os.PathLike)):
            raise TypeError(f"`save_directory` must be a folder path (str or Path), got {type(save_directory).__name__}.")
        path = Path(save_directory)
        blocking_file = next((ancestor for ancestor in (path, *path.parents) if ancestor.is_file()), None)
        if blocking_file is not None:
            raise ValueError(
                f"`save_directory` {str(save_directory)!r} cannot be a folder: {blocking_file} is a file. "
                "Pass the path of a folder (it is created if missing)."
            )
        with atomic_save_into(path) as staging:  # all or nothing, even on a full disk or a killed process
            super().save_pretrained(staging, *args, **kwargs)

    @staticmethod
    def load_model(file_name, quantization_config=None):
        """optimum-intel's `load_model` (the full model), with a ValueError naming the file when OpenVINO cannot read it."""
        try:
            return OVModelForSequenceClassification.load_model(file_name, quantization_config)
        except RuntimeError as error:
            reason = openvino_error_reason(error)
            damaged = Path(file_name).with_suffix(".bin") if "bin file" in reason else Path(file_name)
            raise ValueError(
                f"{damaged} is damaged or incomplete; OpenVINO cannot read it ({reason}). {REBUILD_HINT}"
            ) from None

    def _save_pretrained(self, save_directory: Union[str, Path]):
        super()._save_pretrained(save_directory)
        save_segments(self.exit_segments, save_directory)
        self.early_exit_config.save(save_directory)

    def compile(self):
        """Compile the segments and the single-row graph built from them (the full model is only kept for saving and
        for plain optimum-intel loading). Raises ValueError naming `device` / `ov_config` if OpenVINO refuses them."""
        with self._call_lock:
            if self._segment_requests is None:
                self._compile_segments()
            # The parent checks `self.request` to know it is compiled.
            self.request = self._segment_requests[0]

    def _compile_segments(self):
        core = openvino.Core()
        ov_config = {**self.ov_config}
        segments = [self.exit_segments[name] for name in segment_names(self.num_layers)]
        single_row_graph = build_single_row_graph(
            segments, self.early_exit_config.exit_temperatures, self.early_exit_config.num_labels
        )
        try:
            segment_requests = [
                core.compile_model(segment, self._device, ov_config).create_infer_request() for segment in segments
            ]
            row_graphs = RowGraphs(single_row_graph, lambda graph: core.compile_model(graph, self._device, ov_config),
                                   max_graphs=self.max_fixed_length_graphs, max_length=self._max_sequence_length())
        except RuntimeError as error:
            raise ValueError(
                f"OpenVINO cannot compile the early-exit model for device={self._device!r} with ov_config={ov_config} "
                f"({openvino_error_reason(error)}). Pass a device listed by `openvino.Core().available_devices` "
                "(`device=` or `model.to(...)`) and `ov_config` properties that device supports."
            ) from None
        self._segment_requests, self._row_graphs = segment_requests, row_graphs

    def clear_requests(self):
        with self._call_lock:
            self._segment_requests = None
            self._row_graphs = None
            self.request = None

    # ----- inference ------------------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: Union[torch.Tensor, np.ndarray] = None,
        attention_mask: Optional[Union[torch.Tensor, np.ndarray]] = None,
        token_type_ids: Optional[Union[torch.Tensor, np.ndarray]] = None,
        *,
        entropy_threshold: Optional[float] = None,
        output_exit_layers: bool = False,
        **kwargs,
    ) -> EarlyExitSequenceClassifierOutput:
        """Classify a batch; each row stops at its first layer with normalised entropy below the threshold.

        Args:
            input_ids, attention_mask, token_type_ids: as for `OVModelForSequenceClassification`, integer arrays or
                tensors of one shape [batch, sequence] (numpy in -> numpy out, torch in -> torch out); the mask holds
                0/1 (or bools) and each row attends to at least one token. Use right padding (the tokenizers'
                default): with left padding absolute position embeddings shift, as for the plain model.
            entropy_threshold: overrides `self.entropy_threshold` for this call (a real number in [0, 1]); 0 runs
                every layer.
            output_exit_layers: also return `exit_layers`, the 1-based layer each row left at.

        Raises TypeError/ValueError naming the argument for inputs of the wrong type, dtype or shape, token ids
        outside the vocabulary, sequences longer than the position embeddings, and arguments early exit cannot honour
        (`inputs_embeds`, `position_ids`, `labels`, `output_hidden_states=True`, ...).
        Thread-safe: concurrent calls on one object run one after the other (see the class docstring). Afterwards
        `self.last_forward_stats` (`EarlyExitCallStats`) tells how many OpenVINO calls the last call made.
        """
        threshold = self.entropy_threshold if entropy_threshold is None else validate_entropy_threshold(entropy_threshold)
        if not isinstance(output_exit_layers, (bool, np.bool_)):
            raise TypeError(f"`output_exit_layers` must be True or False, got {reprlib.repr(output_exit_layers)}.")
        _refuse_unsupported_arguments(kwargs)
        numpy_inputs = isinstance(input_ids, np.ndarray)
        input_ids, attention_mask, token_type_ids = self._checked_inputs(input_ids, attention_mask, token_type_ids)
        run = self._run_single_row if input_ids.shape[0] == 1 else self._run_segments
        stats = EarlyExitCallStats()
        with self._call_lock:
            self.compile()
            logits, exit_layers = run(input_ids, attention_mask, token_type_ids, threshold, stats)
            self.last_forward_stats = stats
        if not numpy_inputs:
            logits, exit_layers = torch.from_numpy(logits), torch.from_numpy(exit_layers)
        return EarlyExitSequenceClassifierOutput(logits=logits, exit_layers=exit_layers if output_exit_layers else None)

    def exit_logits_per_layer(self, input_ids, attention_mask=None, token_type_ids=None) -> np.ndarray:
        """Run every layer for every row and return all exits' logits, [num_layers, batch, num_labels].

        What calibration needs: with all layers' logits any threshold can be simulated without re-running.
        The inputs are checked as in `forward`.
        """
        input_ids, attention_mask, token_type_ids = self._checked_inputs(input_ids, attention_mask, token_type_ids)
        layer_logits = []
        hidden = None
        first_inputs = self._first_segment_inputs(input_ids, attention_mask, token_type_ids)
        with self._call_lock:
            self.compile()
            for layer, request in enumerate(self._segment_requests, start=1):
                outputs = _infer_shared(request, first_inputs if layer == 1 else {0: hidden, 1: attention_mask})
                layer_logits.append(np.array(outputs[len(outputs) - 1], dtype=np.float32))
                hidden = outputs[0]
        return np.stack(layer_logits)

    def _checked_inputs(self, input_ids, attention_mask, token_type_ids):
        """`(input_ids, attention_mask, token_type_ids)` as C-contiguous int64 arrays, or a TypeError/ValueError naming
        the argument: OpenVINO reports a bad shape from deep inside a kernel, and embeds an out-of-range id as zeros."""
        if input_ids is None:
            raise ValueError(
                "`input_ids` is required: pass the tokenizer's output, e.g. "
                "`model(**tokenizer(texts, padding=True, return_tensors='np'))`."
            )
        input_ids = _as_int64(input_ids, "input_ids")
        if input_ids.ndim != 2:
            raise ValueError(
                f"`input_ids` must be [batch, sequence], got shape {input_ids.shape}. For one text, tokenize a list "
                "(`tokenizer([text], return_tensors='np')`) or add the batch axis (`input_ids[None]`)."
            )
        if input_ids.size == 0:
            raise ValueError(
                f"`input_ids` is empty (shape {input_ids.shape}): pass at least one row of at least one token."
            )
        vocab_size = self.config.vocab_size
        lowest, highest = int(input_ids.min()), int(input_ids.max())
        if lowest < 0 or highest >= vocab_size:
            raise ValueError(
                f"`input_ids` holds token id {lowest if lowest < 0 else highest}, outside this model's vocabulary "
                f"[0, {vocab_size}): use the tokenizer saved with the model."
            )
        max_length = self._max_sequence_length()
        if max_length is not None and input_ids.shape[1] > max_length:
            raise ValueError(
                f"`input_ids` has {input_ids.shape[1]} tokens per row, more than this model's {max_length} positions: "
                f"truncate (`tokenizer(..., truncation=True, max_length={max_length})`; in a pipeline, pass "
                f"`truncation=True, max_length={max_length}`)."
            )
        if attention_mask is None:
            attention_mask = np.ones_like(input_ids)
        else:
            attention_mask = _as_int64(attention_mask, "attention_mask", bool_allowed=True)
            _check_same_shape(attention_mask, input_ids, "attention_mask")
            if int(attention_mask.min()) < 0 or int(attention_mask.max()) > 1:
                raise ValueError("`attention_mask` must hold 0 (padding) and 1 (token) only, as tokenizers return it.")
            empty_rows = np.flatnonzero(~attention_mask.any(axis=1))
            if empty_rows.size:
                # Such a row has no token to classify (and would leave the batch compaction nothing to keep).
                raise ValueError(
                    f"`attention_mask` row {int(empty_rows[0])} is all zeros: every row needs at least one token "
                    "(tokenizers always add the special tokens)."
                )
        if token_type_ids is not None:
            token_type_ids = _as_int64(token_type_ids, "token_type_ids")
            _check_same_shape(token_type_ids, input_ids, "token_type_ids")
            if self._takes_token_type_ids:
                type_vocab_size = getattr(self.config, "type_vocab_size", None) or 2
                if int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= type_vocab_size:
                    raise ValueError(
                        f"`token_type_ids` must be in [0, {type_vocab_size}) for this model: use the tokenizer's."
                    )
            elif token_type_ids.any():
                raise ValueError(
                    f"`token_type_ids` must be zeros (or left out): this {self.config.model_type} model has no "
                    "segment embeddings."
                )
        return input_ids, attention_mask, token_type_ids

    def _max_sequence_length(self) -> Optional[int]:
        positions = getattr(self.config, "max_position_embeddings", None)
        if positions is None:
            return None
        if self.config.model_type in ("roberta", "xlm-roberta", "camembert"):
            # RoBERTa numbers positions from padding_idx + 1, so padding_idx + 1 of its embeddings are never reached.
            return positions - (self.config.pad_token_id or 0) - 1
        return positions

    def _first_segment_inputs(self, input_ids, attention_mask, token_type_ids) -> dict:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_token_type_ids:
            inputs["token_type_ids"] = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        return inputs

    def _run_single_row(self, input_ids, attention_mask, token_type_ids, threshold, stats: EarlyExitCallStats):
        """One row through the single-row graph: one OpenVINO call. Rows it flags (entropy within its decision
        margin of the threshold at their exit) go through the segments, which decide as the calibration does."""
        inputs = self._first_segment_inputs(input_ids, attention_mask, token_type_ids)
        # Entropies are >= 0, so at threshold 0 no row leaves. Passed as is, the graph would flag every row whose
        # entropy lies within its margin of 0 (sharp exits give many) and send it to the segments for nothing.
        graph_threshold = threshold if threshold > 0.0 else -1.0
        fixed = self._row_graphs.fixed_length(input_ids.shape[1])
        if fixed is None:
            inputs[THRESHOLD_INPUT] = np.array(graph_threshold, dtype=np.float32)
            logits, exit_layer = _infer_shared(self._row_graphs.dynamic, inputs)
        else:
            request, buffers = fixed
            length = input_ids.shape[1]
            for name, values in inputs.items():
                # Masked tokens on the right change no real token's result (attention skips them, pooling weighs 0).
                buffers[name][:, :length] = values
                buffers[name][:, length:] = (self.config.pad_token_id or 0) if name == "input_ids" else 0
            buffers[THRESHOLD_INPUT][...] = graph_threshold
            request.infer()
            logits, exit_layer = (request.get_output_tensor(index).data for index in range(2))
        stats.openvino_calls += 1
        if exit_layer[0] < 0:
            stats.rows_rerun_on_segments += 1
            return self._run_segments(input_ids, attention_mask, token_type_ids, threshold, stats)
        return np.array(logits, dtype=np.float32), np.array(exit_layer, dtype=np.int64)

    def _run_segments(self, input_ids, attention_mask, token_type_ids, threshold, stats: EarlyExitCallStats):
        requests = self._segment_requests
        batch_size, last_layer = input_ids.shape[0], self.num_layers
        logits_out = np.empty((batch_size, self.early_exit_config.num_labels), dtype=np.float32)
        exit_layers = np.full(batch_size, last_layer, dtype=np.int64)

        first_inputs = self._first_segment_inputs(input_ids, attention_mask, token_type_ids)
        alive = np.arange(batch_size)
        mask, hidden = attention_mask, None
        for layer, request in enumerate(requests, start=1):
            outputs = _infer_shared(request, first_inputs if layer == 1 else {0: hidden, 1: mask})
            stats.openvino_calls += 1
            if layer == last_layer:
                logits_out[alive] = outputs[0]
                break
            hidden, exit_logits = outputs[0], outputs[1]
            # The calibration's own formula, so a threshold picked there decides here exactly as it simulated.
            temperature = self.early_exit_config.exit_temperatures[layer - 1 : layer]
            leaving = normalised_entropies(exit_logits[None], temperature)[0] < threshold
            if not leaving.any():
                continue
            logits_out[alive[leaving]] = exit_logits[leaving]
            exit_layers[alive[leaving]] = layer
            staying = ~leaving
            if not staying.any():
                break
            alive, hidden, mask = alive[staying], hidden[staying], mask[staying]
            # Rows that left may have been the long ones: drop the trailing columns no remaining row attends to.
            used_columns = int(np.flatnonzero(mask.any(axis=0))[-1]) + 1
            if used_columns < mask.shape[1]:
                # Contiguous, so OpenVINO can share them: a request must never mix shared and copied inputs.
                hidden = np.ascontiguousarray(hidden[:, :used_columns])
                mask = np.ascontiguousarray(mask[:, :used_columns])
        return logits_out, exit_layers


def _infer_shared(request, inputs: dict) -> list:
    """Run `request` on `inputs` (names or port indices to C-contiguous arrays) without copying in or out.

    Binds each input with `set_tensor` on the caller's memory and reads the outputs as views of the request's
    buffers: the generic `infer(dict)` dispatcher costs a large share of one encoder layer on a short text at batch 1
    (lab/experiments/early_exit_call_costs.py). Each segment's outputs are read before that segment runs again.
    """
    for key, value in inputs.items():
        tensor = openvino.Tensor(value, shared_memory=True)
        if isinstance(key, int):
            request.set_input_tensor(key, tensor)
        else:
            request.set_tensor(key, tensor)
    request.infer()
    return [request.get_output_tensor(index).data for index in range(len(request.model_outputs))]


# Arguments of transformers classifiers that early exit cannot honour; any other unknown argument is refused too
# unless it is None or False (what callers pass to mean "not this").
_IGNORED_ARGUMENTS = ("return_dict",)


def _refuse_unsupported_arguments(kwargs: dict) -> None:
    unsupported = sorted(
        name for name, value in kwargs.items()
        if name not in _IGNORED_ARGUMENTS and value is not None and value is not False
    )
    if unsupported:
        raise TypeError(
            f"Unsupported argument(s) {unsupported}: early exit classifies from `input_ids` (with `attention_mask`, "
            "`token_type_ids`) and returns logits (and `exit_layers`); it takes no embeddings or position ids and "
            "returns no loss, hidden states or attentions (compute a loss from `outputs.logits`)."
        )


def _check_same_shape(values: np.ndarray, input_ids: np.ndarray, name: str) -> None:
    if values.shape != input_ids.shape:
        raise ValueError(
            f"`{name}` has shape {values.shape}, `input_ids` {input_ids.shape}: they must match ([batch, sequence]); "
            "pass the tokenizer's output unchanged."
        )


def _as_int64(values, name: str, bool_allowed: bool = False) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray):
        try:
            values = np.asarray(values)
        except Exception:  # ragged lists and the like
            raise TypeError(f"`{name}` must be a 2-D array/tensor of integers (pad the batch first).") from None
    integers = np.issubdtype(values.dtype, np.integer) or (bool_allowed and values.dtype == np.bool_)
    if not integers:
        raise TypeError(
            f"`{name}` must be a 2-D array/tensor of integers, got {type(values).__name__} of dtype {values.dtype} "
            "(pad the batch first, use the tokenizer's `return_tensors='np'` or `'pt'`)."
        )
    return np.ascontiguousarray(values, dtype=np.int64)
