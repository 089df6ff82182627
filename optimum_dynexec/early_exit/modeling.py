"""`OVEarlyExitModelForSequenceClassification`: an OpenVINO sequence classifier that stops at the first confident layer.

Data flow of one call: tokens -> (embeddings +) layer 1 -> for each next layer segment: run only the rows alive,
take the exit's logits and their (temperature-scaled, normalised) entropy, retire the rows under the threshold,
compact the batch (and trim padding nobody needs any more) -> the logits of the layer each row left at.
Rows never wait for slower rows, and a row's result does not depend on what else is in its batch.
A single row takes one OpenVINO call instead: the same segments chained into one graph whose exits are `If` ops
(`single_row_graph.py`), as the fixed cost of a call is a large share of a layer at batch 1.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import openvino
import torch
from optimum.intel import OVModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from .calibration import normalised_entropies
from .config import EarlyExitConfig, validate_entropy_threshold
from .export import export_early_exit, load_segments, quantize_segments, save_segments, segment_names
from .single_row_graph import THRESHOLD_INPUT, build_single_row_graph


@dataclass
class EarlyExitSequenceClassifierOutput(SequenceClassifierOutput):
    """`SequenceClassifierOutput` plus `exit_layers`: the 1-based layer each row left at (when requested)."""

    exit_layers: Optional[Union[torch.Tensor, np.ndarray]] = None


class OVEarlyExitModelForSequenceClassification(OVModelForSequenceClassification):
    """OpenVINO sequence classifier with entropy-gated early exit, run segment by segment.

    Load a folder exported from a `train-exits` checkpoint (or export one with `export=True`)::

        model = OVEarlyExitModelForSequenceClassification.from_pretrained(folder, entropy_threshold=0.2)
        outputs = model(**tokenizer(texts, padding=True, return_tensors="np"), output_exit_layers=True)

    Keyword-only arguments added to optimum-intel's: `entropy_threshold` (default: the saved one), in [0, 1]:
    a row exits at the first layer whose prediction entropy divided by log(num_labels) is below it.
    `quantization_config=` / `load_in_8bit=` apply to the full model and to every segment.
    """

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
        self.early_exit_config = early_exit_config
        self.exit_segments = exit_segments
        self._segment_requests = None
        self._single_row_request = None
        super().__init__(model, config, **kwargs)
        if entropy_threshold is not None:
            self.entropy_threshold = entropy_threshold

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

    # ----- loading, exporting, saving -------------------------------------------------------------------------

    @classmethod
    def _from_pretrained(cls, model_id, config, *, entropy_threshold: Optional[float] = None, **kwargs):
        folder = Path(model_id) / kwargs.get("subfolder", "")
        if not folder.is_dir():
            raise ValueError(
                f"{model_id!r} is not a local folder. Early-exit models load from a folder written by "
                "`save_pretrained` or `optimum-cli export dynexec`."
            )
        early_exit_config = EarlyExitConfig.load(folder)
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

        if not (Path(model_id) / "early_exit_config.json").is_file():
            raise ValueError(
                f"{model_id!r} has no trained exits (no early_exit_config.json). Train them first: "
                f"`optimum-cli dynexec train-exits --model {model_id} --dataset <data> --output <dir>`."
            )
        for hub_argument in ("token", "revision", "force_download", "cache_dir", "local_files_only", "task"):
            kwargs.pop(hub_argument, None)
        kwargs.pop("trust_remote_code", None)
        save_dir = TemporaryDirectory()
        # The exported files live in this temporary folder; keep it alive as long as the class, like optimum-intel.
        cls._model_save_dir_tempdirectory_instance = save_dir
        export_early_exit(model_id, Path(save_dir.name) / "model")
        return cls._from_pretrained(Path(save_dir.name) / "model", config, **kwargs)

    def _save_pretrained(self, save_directory: Union[str, Path]):
        super()._save_pretrained(save_directory)
        save_segments(self.exit_segments, save_directory)
        self.early_exit_config.save(save_directory)

    def compile(self):
        """Compile the segments and the single-row graph built from them (the full model is only kept for saving and
        for plain optimum-intel loading)."""
        if self._segment_requests is None:
            core = openvino.Core()
            ov_config = {**self.ov_config}
            segments = [self.exit_segments[name] for name in segment_names(self.num_layers)]
            self._segment_requests = [
                core.compile_model(segment, self._device, ov_config).create_infer_request() for segment in segments
            ]
            single_row_graph = build_single_row_graph(
                segments, self.early_exit_config.exit_temperatures, self.early_exit_config.num_labels
            )
            self._single_row_request = core.compile_model(single_row_graph, self._device, ov_config).create_infer_request()
            first_inputs = {name for port in self._segment_requests[0].model_inputs for name in port.get_names()}
            self._takes_token_type_ids = "token_type_ids" in first_inputs
        # The parent checks `self.request` to know it is compiled.
        self.request = self._segment_requests[0]

    def clear_requests(self):
        self._segment_requests = None
        self._single_row_request = None
        self.request = None

    # ----- inference ------------------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: Union[torch.Tensor, np.ndarray],
        attention_mask: Optional[Union[torch.Tensor, np.ndarray]] = None,
        token_type_ids: Optional[Union[torch.Tensor, np.ndarray]] = None,
        *,
        entropy_threshold: Optional[float] = None,
        output_exit_layers: bool = False,
        **kwargs,
    ) -> EarlyExitSequenceClassifierOutput:
        """Classify a batch; each row stops at its first layer with normalised entropy below the threshold.

        Args:
            input_ids, attention_mask, token_type_ids: as for `OVModelForSequenceClassification` (numpy in ->
                numpy out, torch in -> torch out). Padding may be on either side.
            entropy_threshold: overrides `self.entropy_threshold` for this call; 0 runs every layer.
            output_exit_layers: also return `exit_layers`, the 1-based layer each row left at.
        """
        threshold = self.entropy_threshold if entropy_threshold is None else validate_entropy_threshold(entropy_threshold)
        numpy_inputs = isinstance(input_ids, np.ndarray)
        input_ids = _as_int64(input_ids, "input_ids")
        if input_ids.ndim != 2:
            raise ValueError(f"`input_ids` must be [batch, sequence], got shape {input_ids.shape}.")
        attention_mask = np.ones_like(input_ids) if attention_mask is None else _as_int64(attention_mask, "attention_mask")
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"`attention_mask` shape {attention_mask.shape} differs from `input_ids` shape {input_ids.shape}."
            )
        token_type_ids = None if token_type_ids is None else _as_int64(token_type_ids, "token_type_ids")
        self.compile()
        run = self._run_single_row if input_ids.shape[0] == 1 else self._run_segments
        logits, exit_layers = run(input_ids, attention_mask, token_type_ids, threshold)
        if not numpy_inputs:
            logits, exit_layers = torch.from_numpy(logits), torch.from_numpy(exit_layers)
        return EarlyExitSequenceClassifierOutput(logits=logits, exit_layers=exit_layers if output_exit_layers else None)

    def exit_logits_per_layer(self, input_ids, attention_mask=None, token_type_ids=None) -> np.ndarray:
        """Run every layer for every row and return all exits' logits, [num_layers, batch, num_labels].

        What calibration needs: with all layers' logits any threshold can be simulated without re-running.
        """
        input_ids = _as_int64(input_ids, "input_ids")
        attention_mask = np.ones_like(input_ids) if attention_mask is None else _as_int64(attention_mask, "attention_mask")
        token_type_ids = None if token_type_ids is None else _as_int64(token_type_ids, "token_type_ids")
        self.compile()
        layer_logits = []
        hidden = None
        first_inputs = self._first_segment_inputs(input_ids, attention_mask, token_type_ids)
        for layer, request in enumerate(self._segment_requests, start=1):
            outputs = _infer_shared(request, first_inputs if layer == 1 else {0: hidden, 1: attention_mask})
            layer_logits.append(np.array(outputs[len(outputs) - 1], dtype=np.float32))
            hidden = outputs[0]
        return np.stack(layer_logits)

    def _first_segment_inputs(self, input_ids, attention_mask, token_type_ids) -> dict:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_token_type_ids:
            inputs["token_type_ids"] = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        return inputs

    def _run_single_row(self, input_ids, attention_mask, token_type_ids, threshold):
        """One row through the single-row graph: one OpenVINO call. Rows it flags (entropy within its decision
        margin of the threshold at their exit) go through the segments, which decide as the calibration does."""
        inputs = self._first_segment_inputs(input_ids, attention_mask, token_type_ids)
        inputs[THRESHOLD_INPUT] = np.array(threshold, dtype=np.float32)
        logits, exit_layer = _infer_shared(self._single_row_request, inputs)
        if exit_layer[0] < 0:
            return self._run_segments(input_ids, attention_mask, token_type_ids, threshold)
        return np.array(logits, dtype=np.float32), np.array(exit_layer, dtype=np.int64)

    def _run_segments(self, input_ids, attention_mask, token_type_ids, threshold):
        requests = self._segment_requests
        batch_size, last_layer = input_ids.shape[0], self.num_layers
        logits_out = np.empty((batch_size, self.early_exit_config.num_labels), dtype=np.float32)
        exit_layers = np.full(batch_size, last_layer, dtype=np.int64)

        first_inputs = self._first_segment_inputs(input_ids, attention_mask, token_type_ids)
        alive = np.arange(batch_size)
        mask, hidden = attention_mask, None
        for layer, request in enumerate(requests, start=1):
            outputs = _infer_shared(request, first_inputs if layer == 1 else {0: hidden, 1: mask})
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
    buffers: the generic `infer(dict)` dispatcher costs ~0.1-0.2 ms per call, a large share of one encoder layer on a
    short text at batch 1. Each segment's outputs are read before that segment runs again.
    """
    for key, value in inputs.items():
        tensor = openvino.Tensor(value, shared_memory=True)
        if isinstance(key, int):
            request.set_input_tensor(key, tensor)
        else:
            request.set_tensor(key, tensor)
    request.infer()
    return [request.get_output_tensor(index).data for index in range(len(request.model_outputs))]


def _as_int64(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray):
        try:
            values = np.asarray(values)
        except Exception as error:  # ragged lists and the like
            raise TypeError(f"`{name}` must be a 2-D array/tensor of integers (pad the batch first).") from error
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integers, got dtype {values.dtype}.")
    return np.ascontiguousarray(values, dtype=np.int64)
