"""The encoder as per-layer OpenVINO segments, each layer with its exit head.

    exits/layer_1.xml   input_ids, attention_mask [, token_type_ids] -> hidden_states, logits  (embeddings + layer 1)
    exits/layer_2.xml   hidden_states, attention_mask                -> hidden_states, logits  (logits of exit 2)
    ...
    exits/layer_L.xml   hidden_states, attention_mask                -> logits                 (the model's classifier)

The embeddings are fused into the first segment and the final classifier into the last: every row runs
them anyway, and at batch 1 each OpenVINO call costs a fixed overhead that would otherwise eat the gain of
an early exit (see docs/early_exit.md). Every segment has dynamic batch and sequence axes, so the runtime can
drop rows that have exited and trim padding between layers. The plain full model (`openvino_model.xml`) is
exported next to them by optimum-intel, so the folder still loads with `OVModelForSequenceClassification`.
"""

import logging
from pathlib import Path
from typing import Dict, Optional, Union

import openvino
import torch
from torch import nn

from ..utils.model_files import openvino_error_reason
from ..weight_compression import compress_weights, weight_compression_config
from .config import EXITS_DIR_NAME, REBUILD_HINT, EarlyExitConfig, validate_entropy_threshold

logger = logging.getLogger(__name__)

WEIGHT_FORMATS = (None, "fp32", "int8", "int4")


def layer_segment_name(layer: int) -> str:
    """File stem of the segment of (1-based) `layer`."""
    return f"layer_{layer}"


def segment_names(num_layers: int):
    return [layer_segment_name(layer) for layer in range(1, num_layers + 1)]


class LayerSegment(nn.Module):
    """One encoder layer followed by its exit head (or, for the last layer, by the model's classifier)."""

    def __init__(self, encoder, index: int, exit_head: Optional[nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.index = index
        self.exit_head = exit_head

    def forward(self, hidden_states, attention_mask):
        return self._layer_and_exit(hidden_states, attention_mask)

    def _layer_and_exit(self, hidden_states, attention_mask):
        hidden_states = self.encoder.run_layer(self.index, hidden_states, attention_mask)
        if self.exit_head is None:
            return self.encoder.classify(hidden_states, attention_mask)
        return hidden_states, self.exit_head(hidden_states, attention_mask)


class FirstLayerSegment(LayerSegment):
    """The embeddings, then layer 1 and its exit."""

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self._layer_and_exit(self.encoder.embed(input_ids, token_type_ids), attention_mask)


def convert_segments(encoder, exit_heads: nn.ModuleList) -> Dict[str, openvino.Model]:
    """Trace every segment of `encoder` + `exit_heads` to an `openvino.Model` with dynamic batch/sequence axes."""

    hidden_size = encoder.hidden_size
    # Small ids exist in every vocabulary; the values only steer tracing, the shapes are made dynamic below.
    example_ids = torch.tensor([[2, 5, 6, 3], [2, 5, 3, 0]], dtype=torch.long)
    example_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    example_hidden = torch.randn(2, 4, hidden_size)
    segments = {}
    with torch.no_grad():
        for index in range(encoder.num_layers):
            is_last = index == encoder.num_layers - 1
            exit_head = None if is_last else exit_heads[index]
            if index == 0:
                segment = FirstLayerSegment(encoder, index, exit_head)
                example = {"input_ids": example_ids, "attention_mask": example_mask}
                if encoder.uses_token_type_ids:
                    example["token_type_ids"] = torch.zeros_like(example_ids)
                shapes = {name: [-1, -1] for name in example}
            else:
                segment = LayerSegment(encoder, index, exit_head)
                example = {"hidden_states": example_hidden, "attention_mask": example_mask}
                shapes = {"hidden_states": [-1, -1, hidden_size], "attention_mask": [-1, -1]}
            output_names = ["logits"] if is_last else ["hidden_states", "logits"]
            segments[layer_segment_name(index + 1)] = _convert(segment, example, shapes, output_names)
    return segments


def _convert(module, example_inputs: dict, dynamic_shapes: dict, output_names):
    module.eval()
    ov_model = openvino.convert_model(
        module,
        example_input=example_inputs,
        input=[(name, openvino.PartialShape(shape)) for name, shape in dynamic_shapes.items()],
    )
    for port, name in zip(ov_model.inputs, dynamic_shapes):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, output_names):
        port.get_tensor().set_names({name})
    return ov_model


def quantize_segments(segments: Dict[str, openvino.Model], quantization_config) -> Dict[str, openvino.Model]:
    """Apply an optimum-intel weight-only quantization config (or `{"bits": 8}`-style dict) to every segment."""
    quantization_config = weight_compression_config(quantization_config)
    return {name: compress_weights(model, quantization_config) for name, model in segments.items()}


def export_early_exit(
    model: Union[str, Path],
    output: Union[str, Path],
    weight_format: Optional[str] = None,
    *,
    entropy_threshold: Optional[float] = None,
    task: str = "text-classification",
) -> Path:
    """Export a `train-exits` checkpoint to an OpenVINO folder that both our class and optimum-intel load.

    Args:
        model: folder written by `optimum-cli dynexec train-exits` (transformers checkpoint + `exits/` + config).
        output: destination folder; written to a staging folder first and renamed, so it is complete or absent.
        weight_format: None/"fp32" (keep float weights), "int8" or "int4" (NNCF weight compression, applied to
            the full model and every segment alike).
        entropy_threshold: stored as the default threshold of the exported model (else the checkpoint's).
        task: only "text-classification" is supported.
    """
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVWeightQuantizationConfig

    from ..utils.io import atomic_directory
    from .checkpoint import load_exit_checkpoint

    if task not in ("text-classification", "auto", None):
        raise ValueError(f"Early exit exports text-classification models only; got task={task!r}.")
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"`weight_format` must be one of {WEIGHT_FORMATS}, got {weight_format!r}.")
    if entropy_threshold is not None:
        validate_entropy_threshold(entropy_threshold)
    model_dir = Path(model)
    encoder, exit_heads, config = load_exit_checkpoint(model_dir)
    if entropy_threshold is not None:
        config.entropy_threshold = validate_entropy_threshold(entropy_threshold)

    with atomic_directory(Path(output)) as staging:
        main_export(model_name_or_path=str(model_dir), output=staging, task="text-classification", library_name="transformers")
        segments = convert_segments(encoder, exit_heads)
        if weight_format in ("int8", "int4"):
            quantization = OVWeightQuantizationConfig(bits=8 if weight_format == "int8" else 4)
            segments = quantize_segments(segments, quantization)
            _quantize_full_model(staging, quantization)
        save_segments(segments, staging)
        config.save(staging)
    return Path(output)


def save_segments(segments: Dict[str, openvino.Model], directory: Union[str, Path]) -> None:
    """Write `exits/<name>.xml/.bin` into `directory` through a staging folder (no half-written `exits/`)."""

    from ..utils.io import atomic_directory

    with atomic_directory(Path(directory) / EXITS_DIR_NAME) as staging:
        for name, segment in segments.items():
            openvino.save_model(segment, str(staging / f"{name}.xml"), compress_to_fp16=False)


def load_segments(directory: Union[str, Path], config: EarlyExitConfig) -> Dict[str, openvino.Model]:
    """Read `exits/layer_<l>.xml/.bin` of `directory`, checking that each has the inputs and outputs the runtime wires.

    Raises FileNotFoundError for a missing segment and ValueError, naming the file and how to re-create it, for one
    OpenVINO cannot read (truncated, damaged) or that is not the segment of its layer.
    """
    exits_dir = Path(directory) / EXITS_DIR_NAME
    core = openvino.Core()
    segments = {}
    for layer, name in enumerate(segment_names(config.num_layers), start=1):
        path = exits_dir / f"{name}.xml"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: `{directory}` has no exported exits. Export a `train-exits` checkpoint with "
                "`OVEarlyExitModelForSequenceClassification.from_pretrained(checkpoint, export=True)`."
            )
        try:
            segments[name] = core.read_model(str(path))
        except RuntimeError as error:
            reason = openvino_error_reason(error)
            damaged = path.with_suffix(".bin") if "bin file" in reason else path
            # `from None`: the OpenVINO trace points into C++ and says nothing about which file or what to do.
            raise ValueError(
                f"{damaged} is damaged or incomplete; OpenVINO cannot read it ({reason}). {REBUILD_HINT}"
            ) from None
        _check_segment_ports(segments[name], path, layer, config)
    return segments


def _check_segment_ports(segment: openvino.Model, path: Path, layer: int, config: EarlyExitConfig) -> None:
    """The runtime binds inputs and reads outputs by position (and the single-row graph wires them by position)."""
    first_input = ("input_ids",) if layer == 1 else ("hidden_states",)
    expected_inputs = first_input + ("attention_mask",) + (("token_type_ids",) if layer == 1 else ())
    inputs = [port.get_names() for port in segment.inputs]
    outputs = [port.get_names() for port in segment.outputs]
    inputs_match = len(inputs) in (len(expected_inputs), len(expected_inputs) - (layer == 1)) and all(
        name in names for name, names in zip(expected_inputs, inputs)
    )
    # Saving renames an output that shares an input's name (hidden_states -> hidden_states_1): check the logits only.
    outputs_match = len(outputs) == (1 if layer == config.num_layers else 2) and "logits" in outputs[-1]
    labels = segment.outputs[-1].get_partial_shape()[-1] if outputs_match else None
    if not (inputs_match and outputs_match) or (labels.is_static and labels.get_length() != config.num_labels):
        raise ValueError(
            f"{path} is not the segment of layer {layer} of a {config.num_layers}-layer, {config.num_labels}-label "
            f"model (inputs {[sorted(names) for names in inputs]}, outputs {[sorted(names) for names in outputs]}). "
            f"{REBUILD_HINT}"
        )


def _quantize_full_model(folder: Path, quantization_config) -> None:
    path = folder / "openvino_model.xml"
    full_model = compress_weights(openvino.Core().read_model(str(path)), quantization_config)
    staging = folder / ".openvino_model.quantized.xml"
    openvino.save_model(full_model, str(staging), compress_to_fp16=False)
    del full_model
    staging.replace(path)
    staging.with_suffix(".bin").replace(path.with_suffix(".bin"))
