"""The `train-exits` checkpoint: a transformers checkpoint plus `exits/exit_heads.safetensors` and
`early_exit_config.json`. `training.py` writes it, `export.py` reads it; neither needs the other."""

from pathlib import Path

from torch import nn

from ..utils.io import atomic_directory
from .config import EXIT_HEADS_WEIGHTS_NAME, EXITS_DIR_NAME, EarlyExitConfig
from .exit_head import build_exit_heads
from .layered_encoder import LayeredEncoder


def save_exit_checkpoint(model, tokenizer, heads: nn.ModuleList, config: EarlyExitConfig, output_dir) -> None:
    """Write model, tokenizer, `exits/exit_heads.safetensors` and `early_exit_config.json`, all or nothing."""
    from safetensors.torch import save_file

    with atomic_directory(Path(output_dir)) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        (staging / EXITS_DIR_NAME).mkdir()
        state = {name: tensor.detach().contiguous() for name, tensor in heads.state_dict().items()}
        save_file(state, str(staging / EXITS_DIR_NAME / EXIT_HEADS_WEIGHTS_NAME))
        config.save(staging)


def load_exit_checkpoint(model_dir):
    """Load `(model, tokenizer-less LayeredEncoder, exit heads, config)` written by `train_exits`."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    config = EarlyExitConfig.load(model_dir)
    weights = Path(model_dir) / EXITS_DIR_NAME / EXIT_HEADS_WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found; `{model_dir}` was not written by `train-exits`.")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    encoder = LayeredEncoder(model)
    heads = build_exit_heads(encoder.hidden_size, config.num_labels, config.num_layers, config.pooling)
    heads.load_state_dict(load_file(str(weights)))
    return encoder, heads.eval(), config
