"""Model ids and model files: telling a local path from a Hub id, what OpenVINO says about a file it cannot read,
and the tokenizer files openvino-genai reads. Import-light: the CLI's argument checks use it."""

import os
from pathlib import Path
from typing import Union

# Endings that only a file on disk has; a Hub id is `name` or `owner/name`.
MODEL_FILE_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".xml", ".json")
OPENVINO_TOKENIZER_FILES = ("openvino_tokenizer.xml", "openvino_detokenizer.xml")


def looks_like_local_path(value: Union[str, os.PathLike]) -> bool:
    """Whether `value` can only mean a local path, never a Hugging Face Hub id (`name` or `owner/name`)."""
    if isinstance(value, os.PathLike):
        return True
    return (
        os.path.isabs(value)
        or value.startswith((".", "~"))
        or max(value.count("/"), value.count(os.sep)) > 1
        or value.lower().endswith(MODEL_FILE_SUFFIXES)
    )


def openvino_error_reason(error: Exception) -> str:
    """The last line of an OpenVINO error: the reason ("Incorrect weights in bin file!"), without the C++ locations
    its first lines name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def write_openvino_tokenizers(tokenizer, folder: Union[str, Path]) -> None:
    """Convert a Hugging Face tokenizer to the OpenVINO tokenizer and detokenizer IRs openvino-genai reads, into
    `folder` (raises what `openvino_tokenizers` raises for a tokenizer it cannot convert)."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
    for model, name in zip((ov_tokenizer, ov_detokenizer), OPENVINO_TOKENIZER_FILES):
        ov.save_model(model, Path(folder) / name)
