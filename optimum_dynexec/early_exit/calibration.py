"""Entropy threshold <-> accuracy / speed: sweep thresholds on labelled data, pick one, plot the curve.

One full-depth pass records every layer's exit logits for every example; any threshold is then simulated
exactly (a row exits at the first layer whose normalised, temperature-scaled entropy is below it), so a
sweep of 100 thresholds costs one pass. Speed is reported as the layer speed-up, num_layers / mean exit
layer: the ideal a segmented runtime can reach; benchmarks measure the real one.

A threshold picked as "the fastest one at >= 99% on validation" lands where validation noise happened to be kind,
so on new data it tends to fall short (on 2,500 texts, the paired noise of relative accuracy is ~0.5%). With
`confidence`, every point also carries a lower bound of its relative accuracy (a paired bootstrap over the
examples) and the pick requires that bound, not the point estimate, to reach the target.
"""

import json
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

DEFAULT_THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 101), 3))


def normalised_entropies(layer_logits: np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
    """[layers, examples, labels] logits -> [layers, examples] entropy / log(labels) of softmax(logits / T)."""
    scaled = layer_logits / np.asarray(temperatures, dtype=np.float64)[:, None, None]
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))
    entropy = -(np.exp(log_probabilities) * log_probabilities).sum(axis=-1)
    return entropy / np.log(max(layer_logits.shape[-1], 2))


def exit_layers_at(entropies: np.ndarray, threshold: float) -> np.ndarray:
    """1-based exit layer of every example: the first layer with entropy < threshold, else the last layer."""
    num_layers = entropies.shape[0]
    below = entropies[:-1] < threshold
    first = np.where(below.any(axis=0), below.argmax(axis=0) + 1, num_layers)
    return first


def sweep_thresholds(
    layer_logits: np.ndarray,
    labels: Sequence[int],
    temperatures: Sequence[float],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    confidence: Optional[float] = None,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict:
    """Accuracy, relative accuracy (vs. the last layer) and layer speed-up at every threshold.

    With `confidence` (e.g. 0.9), each point also gets `relative_accuracy_lower_bound`: the `1 - confidence`
    quantile of its relative accuracy over `bootstrap_samples` resamples of the examples (the same resample for the
    early-exit and the full predictions, so their correlation is kept).
    """
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` is a probability such as 0.9, got {confidence}.")
    layer_logits = np.asarray(layer_logits, dtype=np.float64)
    labels = np.asarray(labels)
    if layer_logits.ndim != 3 or layer_logits.shape[1] == 0:
        raise ValueError(f"`layer_logits` must be [layers, examples, labels] with examples, got shape {layer_logits.shape}.")
    num_layers, num_examples = layer_logits.shape[:2]
    if labels.shape != (num_examples,):
        raise ValueError(f"`labels` needs one class index per example ({num_examples}), got shape {labels.shape}.")
    if len(temperatures) != num_layers:
        raise ValueError(f"`temperatures` needs one value per layer ({num_layers}), got {len(temperatures)}.")
    if not all(0.0 <= float(threshold) <= 1.0 for threshold in thresholds):
        raise ValueError("`thresholds` are normalised entropies: each must be in [0, 1].")
    predictions = layer_logits.argmax(axis=-1)  # [layers, examples]
    entropies = normalised_entropies(layer_logits, temperatures)
    full_correct = predictions[-1] == labels
    full_accuracy = float(full_correct.mean())
    points, correct_per_point = [], []
    for threshold in thresholds:
        exits = exit_layers_at(entropies, float(threshold))
        correct = predictions[exits - 1, np.arange(num_examples)] == labels
        correct_per_point.append(correct)
        accuracy = float(correct.mean())
        points.append(
            {
                "threshold": float(threshold),
                "accuracy": accuracy,
                "relative_accuracy": accuracy / full_accuracy if full_accuracy > 0 else float("nan"),
                "mean_exit_layer": float(exits.mean()),
                "layer_speedup": float(num_layers / exits.mean()),
                "exit_histogram": np.bincount(exits, minlength=num_layers + 1)[1:].tolist(),
            }
        )
    if confidence is not None:
        lower_bounds = _bootstrap_lower_bounds(
            np.stack(correct_per_point), full_correct, confidence, bootstrap_samples, seed
        )
        for point, lower_bound in zip(points, lower_bounds):
            point["relative_accuracy_lower_bound"] = float(lower_bound)
    return {
        "num_layers": int(num_layers),
        "num_examples": int(num_examples),
        "confidence": confidence,
        "full_accuracy": full_accuracy,
        "layer_accuracy": [float((predictions[layer] == labels).mean()) for layer in range(num_layers)],
        "points": points,
    }


def _bootstrap_lower_bounds(correct, full_correct, confidence, samples, seed, chunk=100) -> np.ndarray:
    """[points, examples] correctness -> each point's `1 - confidence` quantile of relative accuracy.

    A resample is a vector of per-example counts (multinomial), so the correct counts of every point under it are
    one matrix product, and memory stays at `chunk` x examples whatever the set's size.
    """
    num_examples = correct.shape[1]
    rng = np.random.default_rng(seed)
    uniform = np.full(num_examples, 1.0 / num_examples)
    correct, full_correct = correct.astype(np.float64), full_correct.astype(np.float64)
    relative = []
    for start in range(0, samples, chunk):
        counts = rng.multinomial(num_examples, uniform, size=min(chunk, samples - start)).T.astype(np.float64)
        relative.append((correct @ counts) / np.maximum(full_correct @ counts, 1.0))
    return np.quantile(np.concatenate(relative, axis=1), 1.0 - confidence, axis=1)


def pick_threshold(sweep: dict, target_relative_accuracy: float = 0.99) -> Optional[dict]:
    """The fastest point whose accuracy is at least `target_relative_accuracy` x the full model's (None if none).

    If the sweep was made with a `confidence`, the point's lower bound must reach the target, not its estimate.
    """
    if not 0.0 < target_relative_accuracy <= 1.5:
        raise ValueError(f"`target_relative_accuracy` is a ratio such as 0.99, got {target_relative_accuracy}.")
    key = "relative_accuracy_lower_bound" if sweep.get("confidence") is not None else "relative_accuracy"
    eligible = [point for point in sweep["points"] if point[key] >= target_relative_accuracy]
    if not eligible:
        return None
    return max(eligible, key=lambda point: (point["layer_speedup"], -point["threshold"]))


def save_curve(sweep: dict, output_dir, chosen: Optional[dict] = None, title: str = "Early exit") -> List[Path]:
    """Write `calibration.json` and `calibration.png` (% of full accuracy and layer speed-up vs. threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {**sweep, "chosen": chosen}
    json_path = output_dir / "calibration.json"
    staging = output_dir / ".calibration.json.partial"
    staging.write_text(json.dumps(payload, indent=2) + "\n")
    staging.replace(json_path)

    thresholds = [point["threshold"] for point in sweep["points"]]
    relative = [100.0 * point["relative_accuracy"] for point in sweep["points"]]
    speedup = [point["layer_speedup"] for point in sweep["points"]]
    figure, accuracy_axis = plt.subplots(figsize=(6.4, 4.2))
    accuracy_axis.plot(thresholds, relative, color="tab:blue", label="% of full-model accuracy")
    if sweep.get("confidence") is not None:
        lower = [100.0 * point["relative_accuracy_lower_bound"] for point in sweep["points"]]
        accuracy_axis.plot(thresholds, lower, color="tab:blue", linestyle=":", linewidth=1)
        accuracy_axis.fill_between(thresholds, lower, relative, color="tab:blue", alpha=0.12, linewidth=0,
                                   label=f"{sweep['confidence']:.0%} lower bound")
        accuracy_axis.legend(loc="lower left", fontsize=8)
    accuracy_axis.set_xlabel("entropy threshold (normalised)")
    accuracy_axis.set_ylabel("% of full-model accuracy", color="tab:blue")
    speed_axis = accuracy_axis.twinx()
    speed_axis.plot(thresholds, speedup, color="tab:red", linestyle="--", label="layer speed-up")
    speed_axis.set_ylabel("layer speed-up (layers / mean exit layer)", color="tab:red")
    if chosen is not None:
        accuracy_axis.axvline(chosen["threshold"], color="grey", linestyle=":")
        accuracy_axis.annotate(
            f"{chosen['threshold']:.2f}: {100 * chosen['relative_accuracy']:.1f}%, {chosen['layer_speedup']:.2f}x",
            (chosen["threshold"], 100.0 * chosen["relative_accuracy"]),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=8,
        )
    accuracy_axis.set_title(f"{title} (full accuracy {100 * sweep['full_accuracy']:.1f}%, n={sweep['num_examples']})")
    figure.tight_layout()
    png_path = output_dir / "calibration.png"
    staging_png = output_dir / ".calibration.partial.png"
    figure.savefig(staging_png, dpi=120)
    plt.close(figure)
    staging_png.replace(png_path)
    return [json_path, png_path]


def collect_layer_logits(model, tokenizer, texts: Sequence[str], batch_size: int = 64, max_length: int = 128):
    """All layers' exit logits of `texts` under an `OVEarlyExitModelForSequenceClassification`, [layers, n, labels]."""
    from tqdm.auto import tqdm

    if len(texts) == 0:
        raise ValueError("`texts` is empty: calibration needs labelled texts.")
    order = np.argsort([len(text) for text in texts])  # batches of similar length waste little on padding
    collected = []
    for start in tqdm(range(0, len(texts), batch_size), desc="all-layer pass", unit="batch"):
        batch = [texts[index] for index in order[start : start + batch_size]]
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        collected.append(model.exit_logits_per_layer(**encoded))
    layer_logits = np.concatenate(collected, axis=1)
    return layer_logits[:, np.argsort(order)]
