"""Train the step predictor on minimal-step labels and export it to OpenVINO.

The model is a small BERT regressor trained from scratch (no pretrained text model is needed: the prompts' wording is
what matters, and the pipeline's own tokenizer covers it). It predicts the `quantile`-th quantile of log(steps) with
the pinball loss: aiming above the median makes the predictor err towards an extra step rather than a missing one, so
quality holds while most of the saving remains.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .defaults import PredictorTrainingArguments
from .predictor import StepPredictor, StepPredictorConfig


def pinball_loss(prediction, target, quantile: float):
    """Mean quantile (pinball) loss: under-predictions cost `quantile`, over-predictions `1 - quantile`."""
    import torch

    error = target - prediction
    return torch.maximum(quantile * error, (quantile - 1) * error).mean()


def train_step_predictor(
    prompts: Sequence[str],
    steps: Sequence[int],
    tokenizer,
    output_directory: Path,
    arguments: Optional[PredictorTrainingArguments] = None,
    label_settings: Optional[dict] = None,
    progress: bool = True,
) -> StepPredictor:
    """Train on (prompt, minimal steps) pairs, export to OpenVINO in `output_directory`, and return the predictor.

    `output_directory` afterwards holds a folder `StepPredictor.from_pretrained` loads (and that a StepSaver pipeline
    keeps as `step_predictor/`). Returns validation metrics in `predictor.config.labels["validation"]`.
    """
    import torch
    from optimum.intel import OVModelForSequenceClassification
    from tqdm.auto import tqdm
    from transformers import BertConfig, BertForSequenceClassification

    arguments = arguments or PredictorTrainingArguments()
    arguments.validate()
    if len(prompts) != len(steps):
        raise ValueError(f"Got {len(prompts)} prompts but {len(steps)} step labels.")
    if len(prompts) < 4:
        raise ValueError(f"Need at least 4 labelled prompts to train a step predictor, got {len(prompts)}.")
    if any(int(s) < 1 for s in steps):
        raise ValueError("Step labels must be positive integers.")

    torch.manual_seed(arguments.seed)
    order = np.random.default_rng(arguments.seed).permutation(len(prompts))
    validation_size = int(round(len(prompts) * arguments.validation_fraction))
    validation_rows, training_rows = order[:validation_size], order[validation_size:]

    encoded = tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
    input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
    targets = torch.tensor([math.log(int(s)) for s in steps], dtype=torch.float32)

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=arguments.hidden_size,
        num_hidden_layers=arguments.num_layers,
        num_attention_heads=4,
        intermediate_size=arguments.hidden_size * 2,
        max_position_embeddings=max(64, input_ids.shape[1]),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
        problem_type="regression",
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # start from the median label so the early epochs are not spent learning the offset
        model.classifier.bias.fill_(float(targets[training_rows].median()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=arguments.learning_rate, weight_decay=arguments.weight_decay)

    def evaluate(rows) -> dict:
        model.eval()
        with torch.no_grad():
            prediction = model(input_ids=input_ids[rows], attention_mask=attention_mask[rows]).logits[:, 0]
        model.train()
        predicted_steps = torch.exp(prediction).ceil()
        true_steps = torch.exp(targets[rows]).round()
        return {
            "pinball_loss": float(pinball_loss(prediction, targets[rows], arguments.quantile)),
            "mean_absolute_error_steps": float((predicted_steps - true_steps).abs().mean()),
            "fraction_at_or_above_label": float((predicted_steps >= true_steps).float().mean()),
        }

    best_state, best_loss = None, float("inf")
    generator = torch.Generator().manual_seed(arguments.seed)
    model.train()
    progress_bar = tqdm(range(arguments.epochs), desc="Step predictor", disable=not progress, dynamic_ncols=True)
    for _ in progress_bar:
        shuffled = torch.from_numpy(training_rows)[torch.randperm(len(training_rows), generator=generator)]
        for batch in shuffled.split(arguments.batch_size):
            prediction = model(input_ids=input_ids[batch], attention_mask=attention_mask[batch]).logits[:, 0]
            loss = pinball_loss(prediction, targets[batch], arguments.quantile)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        # Keep the epoch that generalises best; with a few hundred labels, later epochs mostly memorise.
        monitored = evaluate(validation_rows if validation_size else training_rows)
        if monitored["pinball_loss"] < best_loss:
            best_loss = monitored["pinball_loss"]
            best_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        progress_bar.set_postfix(validation_loss=f"{monitored['pinball_loss']:.4f}")
    model.load_state_dict(best_state)
    model.eval()

    metrics = {"train": evaluate(training_rows), "train_size": int(len(training_rows)),
               "validation_size": int(validation_size)}
    if validation_size:
        metrics["validation"] = evaluate(validation_rows)

    output_directory = Path(output_directory)
    with tempfile.TemporaryDirectory() as torch_directory:
        model.save_pretrained(torch_directory)
        tokenizer.save_pretrained(torch_directory)
        ov_model = OVModelForSequenceClassification.from_pretrained(torch_directory, export=True, compile=False)
        predictor = StepPredictor(
            ov_model,
            tokenizer,
            StepPredictorConfig(quantile=arguments.quantile, labels={"settings": label_settings or {}, "metrics": metrics}),
        )
        predictor.save_pretrained(output_directory)
    return StepPredictor.from_pretrained(output_directory)


def train_from_labels_file(labels_path: Path, output_directory: Path, tokenizer=None,
                           arguments: Optional[PredictorTrainingArguments] = None, progress: bool = True) -> StepPredictor:
    """`train_step_predictor` on a file written by `label-steps`; the tokenizer defaults to the labelled pipeline's."""
    from transformers import AutoTokenizer

    from .labels import read_labels

    settings, labels = read_labels(labels_path)
    if tokenizer is None:
        tokenizer_folder = Path(settings["pipeline"]) / "tokenizer"
        if not tokenizer_folder.is_dir():
            raise ValueError(
                f"The labelled pipeline's tokenizer ({tokenizer_folder}) is not available; pass --tokenizer <dir>."
            )
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    elif isinstance(tokenizer, (str, Path)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    return train_step_predictor(
        [label["prompt"] for label in labels],
        [label["num_inference_steps"] for label in labels],
        tokenizer,
        output_directory,
        arguments=arguments,
        label_settings=settings,
        progress=progress,
    )
