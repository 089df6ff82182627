"""The files of a head folder in the published layout (EAGLE-1/2 and EAGLE-3 alike): names, and reading its tensors."""

from pathlib import Path
from typing import Union

import torch

HEAD_WEIGHTS_SAFETENSORS = "model.safetensors"
HEAD_WEIGHTS_BIN = "pytorch_model.bin"
HEAD_CONFIG = "config.json"


def read_head_weights(head_dir: Union[str, Path]) -> dict:
    """The tensors of a published head folder (`model.safetensors` preferred, else `pytorch_model.bin`)."""
    head_dir = Path(head_dir)
    if (head_dir / HEAD_WEIGHTS_SAFETENSORS).is_file():
        from safetensors.torch import load_file

        return load_file(head_dir / HEAD_WEIGHTS_SAFETENSORS)
    if (head_dir / HEAD_WEIGHTS_BIN).is_file():
        return torch.load(head_dir / HEAD_WEIGHTS_BIN, map_location="cpu", weights_only=True)
    raise ValueError(
        f"`eagle_head` folder {head_dir} holds neither {HEAD_WEIGHTS_SAFETENSORS} nor {HEAD_WEIGHTS_BIN}: pass a "
        "folder with an EAGLE head's config.json and weights (fc.*, layers.0.*)."
    )
