"""Training exit heads: one head after every encoder layer of a sequence classifier.

Two schemes:
- `"joint"` (default): backbone, classifier and exit heads are trained together on a sum of losses (equal
  weights by default; PABEE's growing with depth as `layer_weighting="linear"`), each exit mostly distilled from
  the final classifier (FastBERT's self-distillation): the exits learn to give the full model's answer, which is
  what consistency certifies. Exit heads trained on a frozen fine-tuned MiniLM were far less accurate at layers 1-3
  than jointly trained ones in the first experiments here, and early layers are what makes early exit pay.
- `"two-stage"` (DeeBERT): optionally fine-tune the classifier first, then freeze it and train the heads only.

Afterwards one softmax temperature per exit is fitted on validation data to predict the full model's answer
(`calibration.consistency_temperatures`), so that a single entropy threshold means the same confidence of agreeing
with the full model at every layer; `calibrate-exits` fits them again, on texts apart from those that certify the
threshold (the train split by default).
"""

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional
from tqdm.auto import tqdm

from .calibration import consistency_temperatures
from .checkpoint import save_exit_checkpoint
from .config import EXIT_HEADS_WEIGHTS_NAME, EXITS_DIR_NAME, POOLING_CHOICES, EarlyExitConfig
from .exit_head import build_exit_heads
from .layered_encoder import LayeredEncoder

SCHEMES = ("joint", "two-stage")
LAYER_WEIGHTINGS = ("linear", "uniform")


@dataclass
class ExitTrainingArguments:
    """Knobs of `train_exits`; the defaults are the ones the benchmark in docs/benchmarks.md used."""

    scheme: str = "joint"
    pooling: str = "mean"
    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    layer_weighting: str = "uniform"
    distillation_weight: float = 0.9
    distillation_temperature: float = 2.0
    finetune_epochs: Optional[float] = None
    max_length: int = 128
    calibrate_temperatures: bool = True
    freeze_word_embeddings: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"`scheme` must be one of {SCHEMES}, got {self.scheme!r}.")
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"`pooling` must be one of {POOLING_CHOICES}, got {self.pooling!r}.")
        if self.layer_weighting not in LAYER_WEIGHTINGS:
            raise ValueError(f"`layer_weighting` must be one of {LAYER_WEIGHTINGS}, got {self.layer_weighting!r}.")
        if not 0.0 <= self.distillation_weight <= 1.0:
            raise ValueError(f"`distillation_weight` must be in [0, 1], got {self.distillation_weight}.")
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError("`epochs` and `batch_size` must be positive.")


def train_exits(
    model_name_or_path: str,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    validation_texts: Sequence[str],
    validation_labels: Sequence[str],
    output_dir,
    arguments: Optional[ExitTrainingArguments] = None,
) -> EarlyExitConfig:
    """Add an exit head after every layer of `model_name_or_path`, train, calibrate, and save to `output_dir`.

    `model_name_or_path` is a fine-tuned classifier (its label names are kept when they match the data) or a
    base encoder (a classifier head is added). The output folder is a normal transformers checkpoint plus
    `exits/exit_heads.safetensors` and `early_exit_config.json`; export it with
    `OVEarlyExitModelForSequenceClassification.from_pretrained(output_dir, export=True)`.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    arguments = arguments or ExitTrainingArguments()
    if len(train_texts) != len(train_labels) or len(validation_texts) != len(validation_labels):
        raise ValueError("Each text needs exactly one label (texts and labels differ in length).")
    _seed_everything(arguments.seed)

    label_names = sorted(set(train_labels))
    unknown = sorted(set(validation_labels) - set(label_names))
    if unknown:
        raise ValueError(f"Validation labels {unknown[:5]} never occur in the training data.")
    base_config = AutoConfig.from_pretrained(model_name_or_path)
    keeps_labels = sorted(getattr(base_config, "label2id", {}) or {}) == label_names and getattr(
        base_config, "architectures", None
    ) and any(name.endswith("ForSequenceClassification") for name in base_config.architectures)
    label2id = dict(base_config.label2id) if keeps_labels else {name: index for index, name in enumerate(label_names)}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_name_or_path,
        num_labels=len(label2id),
        id2label={index: name for name, index in label2id.items()},
        label2id=label2id,
        ignore_mismatched_sizes=True,
        attn_implementation="eager",
    )
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    encoder = LayeredEncoder(model)
    heads = build_exit_heads(encoder.hidden_size, len(label2id), encoder.num_layers, arguments.pooling)
    resumed = _resume_heads(model_name_or_path, heads, keeps_labels, arguments.pooling, encoder.num_layers)

    train_set = _encode(tokenizer, train_texts, [label2id[label] for label in train_labels], arguments.max_length)
    validation_set = _encode(
        tokenizer, validation_texts, [label2id[label] for label in validation_labels], arguments.max_length
    )

    history = []
    if arguments.scheme == "joint":
        history += _train(encoder, heads, train_set, validation_set, tokenizer, arguments, arguments.epochs, "joint")
    else:
        finetune_epochs = arguments.finetune_epochs
        if finetune_epochs is None:
            finetune_epochs = 0.0 if keeps_labels else arguments.epochs
        if finetune_epochs > 0:
            history += _train(encoder, heads, train_set, validation_set, tokenizer, arguments, finetune_epochs, "final")
        history += _train(encoder, heads, train_set, validation_set, tokenizer, arguments, arguments.epochs, "heads")

    validation_logits = _layer_logits(encoder, heads, validation_set, tokenizer)
    validation_targets = np.asarray(validation_set["labels"])
    temperatures = [1.0] * encoder.num_layers
    if arguments.calibrate_temperatures:
        temperatures = consistency_temperatures(np.stack(validation_logits))
    accuracies = [float((logits.argmax(-1) == validation_targets).mean()) for logits in validation_logits]
    tqdm.write("validation accuracy per layer: " + " ".join(f"{accuracy:.3f}" for accuracy in accuracies))

    config = EarlyExitConfig(
        num_layers=encoder.num_layers,
        num_labels=len(label2id),
        pooling=arguments.pooling,
        exit_temperatures=temperatures,
        training={
            "arguments": asdict(arguments),
            "base_model": str(model_name_or_path),
            "resumed_exit_heads": resumed,
            "train_examples": len(train_texts),
            "validation_examples": len(validation_texts),
            "validation_accuracy_per_layer": accuracies,
            "history": history,
        },
    )
    save_exit_checkpoint(model, tokenizer, heads, config, output_dir)
    return config


def _resume_heads(model_name_or_path, heads, keeps_labels, pooling, num_layers) -> bool:
    """Start from the exit heads of a `train-exits` checkpoint when it has compatible ones (same labels/pooling)."""
    from safetensors.torch import load_file

    folder = Path(model_name_or_path)
    weights = folder / EXITS_DIR_NAME / EXIT_HEADS_WEIGHTS_NAME
    if not (keeps_labels and weights.is_file() and (folder / "early_exit_config.json").is_file()):
        return False
    previous = EarlyExitConfig.load(folder)
    if previous.pooling != pooling or previous.num_layers != num_layers:
        return False
    heads.load_state_dict(load_file(str(weights)))
    tqdm.write(f"continuing from the exit heads in {weights}")
    return True


def _train(encoder, heads, train_set, validation_set, tokenizer, arguments, epochs, stage) -> List[dict]:
    """One training stage: "joint" (everything), "final" (model only) or "heads" (frozen model)."""
    model = encoder.model
    for parameter in model.parameters():
        parameter.requires_grad_(stage != "heads")
    if arguments.freeze_word_embeddings:
        # The vocabulary matrix is half of a small encoder's weights; on CPU its dense gradient and Adam update
        # cost about as much as the layers' backward pass, for little gain on short texts.
        model.get_input_embeddings().weight.requires_grad_(False)
    parameter_groups = []
    if stage != "heads":
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        parameter_groups.append({"params": trainable, "lr": arguments.learning_rate})
    if stage != "final":
        parameter_groups.append({"params": list(heads.parameters()), "lr": arguments.head_learning_rate})
    optimizer = torch.optim.AdamW(parameter_groups, weight_decay=arguments.weight_decay)

    steps_per_epoch = math.ceil(len(train_set["labels"]) / arguments.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * epochs)))
    warmup_steps = int(arguments.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / max(1, warmup_steps), max(0.0, (total_steps - step) / (total_steps - warmup_steps))),
    )
    layer_weights = _layer_weights(encoder.num_layers, arguments.layer_weighting, stage)

    history, step = [], 0
    epoch_count = math.ceil(epochs)
    for epoch in range(epoch_count):
        model.train()
        heads.train()
        batches = _length_bucketed_batches(train_set, arguments.batch_size, arguments.seed + epoch)
        batches = batches[: total_steps - step]
        progress = tqdm(batches, desc=f"{stage} epoch {epoch + 1}/{epoch_count}", unit="batch")
        for batch_indices in progress:
            batch = _collate(tokenizer, train_set, batch_indices)
            layer_logits = forward_all_layers(encoder, heads, batch, with_exits=stage != "final")
            loss = _exit_loss(layer_logits, batch["labels"], layer_weights, arguments)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for group in parameter_groups for p in group["params"]], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.set_postfix(loss=f"{loss.item():.3f}")
        accuracies = _accuracies(_layer_logits(encoder, heads, validation_set, tokenizer), validation_set["labels"])
        history.append({"stage": stage, "epoch": epoch + 1, "validation_accuracy_per_layer": accuracies})
        tqdm.write(f"{stage} epoch {epoch + 1}: validation accuracy per layer " + " ".join(f"{a:.3f}" for a in accuracies))
        if step >= total_steps:
            break
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return history


def _layer_weights(num_layers: int, weighting: str, stage: str) -> List[float]:
    if stage == "final":
        return [0.0] * (num_layers - 1) + [1.0]
    weights = [float(layer) for layer in range(1, num_layers + 1)] if weighting == "linear" else [1.0] * num_layers
    if stage == "heads":
        weights[-1] = 0.0  # the frozen classifier cannot learn
    total = sum(weights)
    return [weight / total for weight in weights]


def forward_all_layers(encoder, heads, batch, with_exits: bool = True) -> List[Optional[torch.Tensor]]:
    """In torch, the logits of every exit (`heads`, one per layer but the last; None when `with_exits` is False) and,
    last, of the model's own classifier, for `batch` (`input_ids`, `attention_mask`[, `token_type_ids`]) through the
    `LayeredEncoder` `encoder`: what training optimises and what the exported segments must reproduce."""
    mask = batch["attention_mask"]
    hidden = encoder.embed(batch["input_ids"], batch.get("token_type_ids"))
    layer_logits = []
    for index in range(encoder.num_layers):
        hidden = encoder.run_layer(index, hidden, mask)
        if index < encoder.num_layers - 1:
            layer_logits.append(heads[index](hidden, mask) if with_exits else None)
    layer_logits.append(encoder.classify(hidden, mask))
    return layer_logits


def _exit_loss(layer_logits, labels, layer_weights, arguments) -> torch.Tensor:
    temperature = arguments.distillation_temperature
    final_logits = layer_logits[-1]
    teacher = functional.softmax(final_logits.detach() / temperature, dim=-1)
    total = final_logits.new_zeros(())
    for index, (logits, weight) in enumerate(zip(layer_logits, layer_weights)):
        if logits is None or weight == 0.0:
            continue
        loss = functional.cross_entropy(logits, labels)
        is_exit = index < len(layer_logits) - 1
        if is_exit and arguments.distillation_weight > 0:
            distillation = functional.kl_div(
                functional.log_softmax(logits / temperature, dim=-1), teacher, reduction="batchmean"
            ) * (temperature**2)
            loss = (1.0 - arguments.distillation_weight) * loss + arguments.distillation_weight * distillation
        total = total + weight * loss
    return total


@torch.no_grad()
def _layer_logits(encoder, heads, dataset, tokenizer, batch_size: int = 128) -> List[np.ndarray]:
    """[num_layers] arrays of [examples, labels] logits, in dataset order."""
    encoder.model.eval()
    heads.eval()
    order = np.argsort([len(ids) for ids in dataset["input_ids"]])  # little padding, fast
    collected = [[] for _ in range(encoder.num_layers)]
    for start in range(0, len(order), batch_size):
        batch = _collate(tokenizer, dataset, order[start : start + batch_size])
        for layer, logits in enumerate(forward_all_layers(encoder, heads, batch)):
            collected[layer].append(logits.float().numpy())
    inverse = np.argsort(order)
    return [np.concatenate(parts)[inverse] for parts in collected]


def _accuracies(layer_logits: List[np.ndarray], labels) -> List[float]:
    targets = np.asarray(labels)
    return [float((logits.argmax(-1) == targets).mean()) for logits in layer_logits]


def _encode(tokenizer, texts, label_ids, max_length) -> dict:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return {**{key: list(value) for key, value in encoded.items()}, "labels": list(label_ids)}


def _collate(tokenizer, dataset, indices) -> dict:
    features = [{key: dataset[key][index] for key in dataset if key != "labels"} for index in indices]
    batch = dict(tokenizer.pad(features, return_tensors="pt"))
    batch["labels"] = torch.as_tensor([dataset["labels"][index] for index in indices], dtype=torch.long)
    return batch


def _length_bucketed_batches(dataset, batch_size: int, seed: int) -> List[np.ndarray]:
    """Shuffled batches of similar lengths: chunks of 50 batches are sorted by length, then batches shuffled."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset["labels"]))
    lengths = np.asarray([len(ids) for ids in dataset["input_ids"]])
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
