"""Weight-only compression for the OpenVINO graphs this package exports itself (early-exit segments, the EAGLE head).

optimum-intel compresses the graphs it exports; ours go through the same routine with the same configs, so
`quantization_config=` / `load_in_8bit=` mean the same thing for every graph a model holds.
"""

import openvino as ov


def weight_compression_config(quantization_config, argument: str = "quantization_config"):
    """`quantization_config` as an `OVWeightQuantizationConfig` (given as one or as its dict, e.g. `{"bits": 8}`).

    Raises a `TypeError` naming `argument` for anything else: these graphs are exported without calibration data, so
    they take weight-only compression."""
    from optimum.intel import OVWeightQuantizationConfig

    if isinstance(quantization_config, dict):
        quantization_config = OVWeightQuantizationConfig.from_dict(quantization_config)
    if not isinstance(quantization_config, OVWeightQuantizationConfig):
        raise TypeError(
            f"`{argument}` must be an `OVWeightQuantizationConfig` or its dict (e.g. {{'bits': 8}}), or pass "
            f"`load_in_8bit=True`: these graphs take weight-only compression, got {type(quantization_config).__name__}."
        )
    return quantization_config


def compress_weights(model: ov.Model, quantization_config) -> ov.Model:
    """`model` with its weights compressed as `quantization_config` says, by optimum-intel's own routine (callers
    with an argument of their own to name validate it first with `weight_compression_config`)."""
    from optimum.intel.openvino.quantization import _weight_only_quantization

    return _weight_only_quantization(model, weight_compression_config(quantization_config))
