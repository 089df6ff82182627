"""Entropy threshold <-> accuracy / speed: sweep thresholds on labelled data, pick one, plot the curve.

One full-depth pass records every layer's exit logits for every example; any threshold is then simulated
exactly (a row exits at the first layer whose normalised, temperature-scaled entropy is below it), so a
sweep of 100 thresholds costs one pass. Speed is reported as the layer speed-up, num_layers / mean exit
layer: the ideal a segmented runtime can reach; benchmarks measure the real one.

A threshold picked as "the fastest one at >= 99% on validation" lands where validation noise happened to be kind,
so on new data it tends to fall short (the paired noise of relative accuracy on a few thousand texts is as large as
the margin it keeps). With
`confidence`, every point also carries a lower bound of its relative accuracy (a paired bootstrap over the
examples) and the pick requires that bound, not the point estimate, to reach the target. That bound is still a
heuristic. `certify_threshold` gives a stated guarantee instead: Learn-then-Test (Angelopoulos et al., 2021,
arXiv 2110.01052), as CALM (Schuster et al., 2022, arXiv 2207.07061) applies it to early-exit language models.
Its default criterion is consistency with the full model (the early prediction equals the last layer's), which
needs no labels, so every unlabelled text can calibrate:

    sweep = sweep_exits(predictions, entropies)                 # [layers, rows] each, labels optional
    certified = certify_threshold(sweep, epsilon=0.01, delta=0.05)
    certified["chosen"]["threshold"], certified["chosen"]["layer_speedup"]

`certify_exits` is what `calibrate-exits` runs: it first fits each exit's temperature, on part of the rows, to
predict the full model's answer (`consistency_temperatures`), and certifies on the other part.
"""

import json
import numbers
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .entropy import exit_layers_at, log_softmax, normalised_entropies  # noqa: F401  (part of this module's API)

# Fixed before any data is seen: Learn-then-Test's guarantee holds for a candidate list chosen independently of the
# calibration rows.
DEFAULT_THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 101), 3))
# Certification walks a finer list: fixed-sequence testing pays nothing for more candidates, and temperatures fitted
# for consistency put the useful thresholds close to 0, where steps of 0.01 are coarse.
CERTIFICATION_THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 1001), 4))
# Share of the calibration rows that fit the temperatures in `certify_exits`; the rest certify the threshold.
DEFAULT_FIT_SHARE = 0.5
CRITERIA = ("consistency", "accuracy")
# The count of each point that a criterion's risk is made of (see `certify_threshold`).
_RISK_COUNTS = {"consistency": "inconsistent_rows", "accuracy": "lost_rows"}


def sweep_thresholds(
    layer_logits: np.ndarray,
    labels: Sequence[int],
    temperatures: Sequence[float],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    confidence: Optional[float] = None,
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> dict:
    """Accuracy, relative accuracy (vs. the last layer), consistency and layer speed-up at every threshold.

    `sweep_exits` on labelled logits: [layers, examples, labels] logits, one class index per example, one temperature
    per layer. With `confidence` (e.g. 0.9), each point also gets `relative_accuracy_lower_bound`: the
    `1 - confidence` quantile of its relative accuracy over `bootstrap_samples` resamples of the examples (the same
    resample for the early-exit and the full predictions, so their correlation is kept).
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
    predictions = layer_logits.argmax(axis=-1)  # [layers, examples]
    entropies = normalised_entropies(layer_logits, temperatures)
    sweep, correct_per_point = _sweep(predictions, entropies, labels, thresholds)
    sweep["confidence"] = confidence
    if confidence is not None:
        lower_bounds = _bootstrap_lower_bounds(
            np.stack(correct_per_point), predictions[-1] == labels, confidence, bootstrap_samples, seed
        )
        for point, lower_bound in zip(sweep["points"], lower_bounds):
            point["relative_accuracy_lower_bound"] = float(lower_bound)
    return sweep


def sweep_exits(
    predictions: np.ndarray,
    entropies: np.ndarray,
    labels: Optional[Sequence[int]] = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict:
    """Consistency with the full model, layer speed-up and (given labels) accuracy at every threshold.

    Args:
        predictions: [layers, rows] class index predicted by each layer's exit (the last layer is the full model).
        entropies: [layers, rows] normalised entropy of each of those predictions (`normalised_entropies`).
        labels: one class index per row, or None: consistency needs no labels.
        thresholds: entropy thresholds in [0, 1] to simulate.

    Each point holds `threshold`, `consistency` (share of rows whose early prediction equals the last layer's),
    `inconsistent_rows`, `mean_exit_layer`, `layer_speedup`, `exit_histogram`, and with labels `accuracy`,
    `relative_accuracy` and `lost_rows` (rows the full model gets right and the early exit wrong).
    """
    predictions, entropies = np.asarray(predictions), np.asarray(entropies, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape[1] == 0:
        raise ValueError(f"`predictions` must be [layers, rows] with rows, got shape {predictions.shape}.")
    if entropies.shape != predictions.shape:
        raise ValueError(f"`entropies` must have the shape of `predictions` {predictions.shape}, got {entropies.shape}.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != predictions.shape[1:]:
            raise ValueError(f"`labels` needs one class index per row ({predictions.shape[1]}), got shape {labels.shape}.")
    sweep, _ = _sweep(predictions, entropies, labels, thresholds)
    return sweep


def _sweep(predictions, entropies, labels, thresholds):
    """`sweep_exits` on checked arrays, plus each point's per-row correctness (None without labels) for a bootstrap."""
    if len(thresholds) == 0 or not all(0.0 <= float(threshold) <= 1.0 for threshold in thresholds):
        raise ValueError("`thresholds` are normalised entropies: give at least one, each in [0, 1].")
    num_layers, num_examples = predictions.shape
    rows = np.arange(num_examples)
    full_predictions = predictions[-1]
    full_correct = None if labels is None else full_predictions == labels
    full_accuracy = None if labels is None else float(full_correct.mean())
    points, correct_per_point = [], []
    for threshold in thresholds:
        exits = exit_layers_at(entropies, float(threshold))
        early = predictions[exits - 1, rows]
        consistent = early == full_predictions
        point = {
            "threshold": float(threshold),
            "consistency": float(consistent.mean()),
            "inconsistent_rows": int(num_examples - consistent.sum()),
            "mean_exit_layer": float(exits.mean()),
            "layer_speedup": float(num_layers / exits.mean()),
            "exit_histogram": np.bincount(exits, minlength=num_layers + 1)[1:].tolist(),
        }
        if labels is not None:
            correct = early == labels
            correct_per_point.append(correct)
            accuracy = float(correct.mean())
            point.update(
                accuracy=accuracy,
                relative_accuracy=accuracy / full_accuracy if full_accuracy > 0 else float("nan"),
                lost_rows=int((full_correct & ~correct).sum()),
            )
        points.append(point)
    sweep = {
        "num_layers": int(num_layers),
        "num_examples": int(num_examples),
        "confidence": None,
        "full_accuracy": full_accuracy,
        "layer_accuracy": None if labels is None else [float(accuracy) for accuracy in (predictions == labels).mean(axis=1)],
        "layer_consistency": [float(agreement) for agreement in (predictions == full_predictions).mean(axis=1)],
        "points": points,
    }
    return sweep, (correct_per_point if labels is not None else None)


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


def certify_threshold(
    sweep: dict, epsilon: float = 0.01, delta: float = 0.05, criterion: str = "consistency"
) -> dict:
    """The most aggressive threshold of `sweep` that Learn-then-Test certifies, with its guarantee.

    The guarantee (`criterion="consistency"`): for new rows drawn i.i.d. from the distribution the calibration rows
    were drawn from, the chosen threshold's consistency, P(early prediction == full model's prediction), is at least
    `1 - epsilon`, with probability at least `1 - delta` over the draw of the calibration rows. With
    `criterion="accuracy"` (the sweep needs labels) the certified risk is P(full model right and early exit wrong)
    <= `epsilon`, so accuracy >= full accuracy - `epsilon`. Every threshold from 0 up to the chosen one holds at
    once. Not promised: anything under distribution shift (another domain, text length, language, a changed model
    or another inference precision than the sweep's predictions were computed at), rows the exits were trained on
    (they are not new), or that a finite test set's realised consistency reaches `1 - epsilon` (it scatters around
    the true one; see `held_out_report`).

    The procedure: thresholds in increasing order (0: every row runs every layer, so consistency is 1 by
    construction, always certified) are tested one by one for H0 "risk > epsilon" with the exact binomial p-value
    `binomial_tail_p_value`; the walk stops at the first p-value above `delta` and the last rejected threshold is
    the answer. The order is fixed in advance, so no multiplicity correction is needed (fixed-sequence testing).

    Args:
        sweep: from `sweep_exits` or `sweep_thresholds` (its thresholds must be fixed before seeing the rows).
        epsilon: the risk allowed, in (0, 1); 0.01 promises 99% consistency.
        delta: the chance allowed that the calibration rows were unluckily kind, in (0, 1).
        criterion: "consistency" (no labels needed) or "accuracy".

    Returns `criterion`, `epsilon`, `delta`, `num_examples`, `guarantee` (the sentence above with the numbers),
    `tests` (threshold, p-value and whether certified, in test order) and `chosen`: the certified point with its
    `p_value`, empirical `consistency`, `mean_exit_layer` and `layer_speedup`.
    """
    epsilon, delta = _probability(epsilon, "epsilon"), _probability(delta, "delta")
    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {CRITERIA}, got {criterion!r}.")
    count_key = _RISK_COUNTS[criterion]
    if any(count_key not in point for point in sweep["points"]):
        raise ValueError(
            f"`criterion='{criterion}'` needs labels: sweep labelled rows (`sweep_exits(..., labels=...)`), or "
            "use criterion='consistency', which needs none."
        )
    num_examples = sweep["num_examples"]
    ordered = sorted(sweep["points"], key=lambda point: point["threshold"])
    # Threshold 0 lets no row leave early: its risk is 0 on any data, so it needs no test (and no data).
    conservative = [point for point in ordered if point["threshold"] == 0.0]
    candidates = [point for point in ordered if point["threshold"] > 0.0]
    p_values = binomial_tail_p_value([point[count_key] for point in candidates], num_examples, epsilon)
    certified = fixed_sequence_rejections(p_values, delta)
    if certified:
        chosen = {**candidates[certified - 1], "p_value": float(p_values[certified - 1])}
    else:
        chosen = {**(conservative[0] if conservative else _full_depth_point(sweep)), "p_value": 0.0}
    tests = [{"threshold": point["threshold"], "p_value": 0.0, "certified": True} for point in conservative]
    tests += [
        {"threshold": point["threshold"], "p_value": float(p_value), "certified": index < certified}
        for index, (point, p_value) in enumerate(zip(candidates, p_values))
    ]
    return {
        "criterion": criterion,
        "epsilon": epsilon,
        "delta": delta,
        "num_examples": num_examples,
        "method": "Learn-then-Test, fixed-sequence testing from threshold 0 upwards, exact binomial tail p-values",
        "guarantee": _guarantee(criterion, epsilon, delta, num_examples, chosen["threshold"]),
        "tests": tests,
        "chosen": chosen,
    }


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimising the mean NLL of `targets` under softmax(logits / T) (Guo et al., 2017), searched
    over [0.05, 20]. `logits` [rows, labels], `targets` [rows] class indices."""
    from scipy.optimize import minimize_scalar  # here, not at the top: scipy loads slowly and only fitting needs it

    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    rows = np.arange(len(targets))

    def negative_log_likelihood(log_temperature):
        return float(-log_softmax(logits / np.exp(log_temperature))[rows, targets].mean())

    best = minimize_scalar(negative_log_likelihood, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                           options={"xatol": 1e-4})
    return float(np.exp(best.x))


def consistency_temperatures(layer_logits: np.ndarray) -> List[float]:
    """Per-exit temperatures fitted to predict the full model's answer: exit k's T_k minimises the NLL of the last
    layer's predictions under softmax(logits_k / T_k). No labels needed.

    Why not labels: the gate should be confident exactly when the exit agrees with the full model, which is what
    consistency certifies; a temperature fitted to labels scales each exit for accuracy instead, and a single
    threshold then lets too few rows leave the early exits. The last layer is never gated; its temperature is 1.
    """
    layer_logits = np.asarray(layer_logits)
    full_predictions = layer_logits[-1].argmax(axis=-1)
    return [fit_temperature(logits, full_predictions) for logits in layer_logits[:-1]] + [1.0]


def certify_exits(
    layer_logits: np.ndarray,
    labels: Optional[Sequence[int]] = None,
    epsilon: float = 0.01,
    delta: float = 0.05,
    criterion: str = "consistency",
    fit_share: float = DEFAULT_FIT_SHARE,
    seed: int = 0,
    fit_logits: Optional[np.ndarray] = None,
) -> dict:
    """Fit the exits' temperatures on rows apart from the certifying ones, then certify a threshold.

    The guarantee needs the score (the temperature-scaled entropy) and the candidate thresholds to be fixed before
    the certifying rows are seen, so the temperatures (`consistency_temperatures`, no labels needed) come from other
    rows: `fit_logits` [layers, rows, labels] when given (e.g. texts the exits were trained on: they only need to
    be other rows, not new ones), and then every row of `layer_logits` certifies; otherwise the rows are shuffled
    (`seed`) and split, the first `fit_share` fit the temperatures and the rest certify. The threshold is certified
    with `certify_threshold` over `CERTIFICATION_THRESHOLDS`. `layer_logits` [layers, rows, labels] from
    `collect_layer_logits`; `labels` one class index per row (needed for `criterion="accuracy"` only).

    Why `fit_logits` pays: at epsilon 0.01 and delta 0.05 even a flawless count certifies nothing on fewer than
    `minimum_certifying_rows(0.01, 0.05)` (299) rows, so halving a few hundred calibration texts can leave only
    threshold 0 certified.

    Returns `certify_threshold`'s result plus `temperatures`, `fit_rows`, `seed` and `sweep` (the certifying rows'
    sweep at the new temperatures).
    """
    layer_logits = np.asarray(layer_logits)
    num_rows = layer_logits.shape[1]
    if fit_logits is not None:
        fit_logits = np.asarray(fit_logits)
        if fit_logits.ndim != 3 or fit_logits.shape[0] != layer_logits.shape[0] or fit_logits.shape[1] == 0:
            raise ValueError(f"`fit_logits` must be [layers, rows, labels] with {layer_logits.shape[0]} layers and at "
                             f"least one row, like `layer_logits`; got shape {fit_logits.shape}.")
        fit_rows, certifying = fit_logits.shape[1], np.arange(num_rows)
        temperatures = consistency_temperatures(fit_logits)
    else:
        if not 0.0 < fit_share < 1.0:
            raise ValueError(f"`fit_share` must be strictly between 0 and 1 (e.g. 0.5), got {fit_share!r}.")
        order = np.random.default_rng(seed).permutation(num_rows)
        fit_rows = int(round(num_rows * fit_share))
        if fit_rows < 1 or fit_rows >= num_rows:
            raise ValueError(f"{num_rows} calibration rows cannot be split into a fitting and a certifying part: "
                             "give more calibration texts.")
        fitting, certifying = order[:fit_rows], np.sort(order[fit_rows:])
        temperatures = consistency_temperatures(layer_logits[:, fitting])
    certifying_logits = layer_logits[:, certifying]
    sweep = sweep_exits(
        certifying_logits.argmax(axis=-1),
        normalised_entropies(certifying_logits, temperatures),
        None if labels is None else np.asarray(labels)[certifying],
        CERTIFICATION_THRESHOLDS,
    )
    certification = certify_threshold(sweep, epsilon, delta, criterion)
    return {**certification, "temperatures": temperatures, "fit_rows": fit_rows, "seed": seed, "sweep": sweep}


def minimum_certifying_rows(epsilon: float, delta: float) -> int:
    """The fewest certifying rows on which any threshold above 0 can be certified: even with no risky row, the
    binomial p-value (1 - epsilon)^n must reach `delta`."""
    epsilon, delta = _probability(epsilon, "epsilon"), _probability(delta, "delta")
    return int(np.ceil(np.log(delta) / np.log1p(-epsilon)))


def binomial_tail_p_value(risky_rows, num_rows: int, epsilon: float):
    """P(Binomial(num_rows, epsilon) <= risky_rows): a valid p-value for H0 "the risk is above epsilon".

    A row's loss is 0 or 1, so the count among `num_rows` i.i.d. rows is Binomial(num_rows, risk); under H0 a count
    as small as `risky_rows` is at most this likely. For 0/1 losses this exact tail is tighter than the
    Hoeffding-Bentkus bound LTT uses for bounded losses in general. `risky_rows` may be an array of counts.
    """
    from scipy.stats import binom  # here, not at the top: scipy loads slowly and only certification needs it

    p_values = binom.cdf(np.asarray(risky_rows), num_rows, epsilon)
    return float(p_values) if np.ndim(p_values) == 0 else p_values


def fixed_sequence_rejections(p_values: Sequence[float], delta: float) -> int:
    """How many hypotheses fixed-sequence testing rejects at level `delta`: the leading run of p-values <= `delta`.

    Stopping at the first p-value above `delta`, in an order fixed before seeing the data, keeps the chance of
    rejecting any true null hypothesis at `delta` with no correction for the number of hypotheses.
    """
    above = np.flatnonzero(np.asarray(p_values, dtype=np.float64) > delta)
    return int(above[0]) if above.size else len(p_values)


def held_out_report(test_sweep: dict, certification: Optional[dict] = None, threshold: Optional[float] = None) -> dict:
    """The realised consistency and accuracy of one threshold on held-out rows, against what calibration promised.

    `test_sweep` comes from `sweep_exits` on the held-out rows (with labels for the accuracy fields, else they are
    None); the threshold is `certification["chosen"]["threshold"]` (or `threshold`). With a `certification`, the
    report adds the promise (`promised_consistency` = 1 - epsilon for the consistency criterion,
    `promised_accuracy_drop_at_most` = epsilon for the accuracy one), `realised_risk` and `risk_p_value`:
    P(Binomial(rows, epsilon) >= risky rows seen), how surprising the held-out count would be if the risk were
    exactly epsilon. A realised value a little short of the promise with a large `risk_p_value` is the noise of a
    finite test set; a small one (below ~0.05) is evidence the promise does not hold on this data, e.g. because
    it is not drawn like the calibration rows.
    """
    if threshold is None:
        if certification is None:
            raise ValueError("`held_out_report` needs the `certification` or a `threshold`.")
        threshold = certification["chosen"]["threshold"]
    point = next((point for point in test_sweep["points"] if point["threshold"] == float(threshold)), None)
    if point is None:
        raise ValueError(f"`test_sweep` has no point at threshold {threshold}: sweep the held-out rows at it.")
    labelled = "accuracy" in point
    full_accuracy = test_sweep["full_accuracy"]
    report = {
        "threshold": point["threshold"],
        "num_rows": test_sweep["num_examples"],
        "realised_consistency": point["consistency"],
        "realised_accuracy": point["accuracy"] if labelled else None,
        "realised_full_accuracy": full_accuracy,
        "realised_accuracy_relative_to_full": point["relative_accuracy"] if labelled else None,
        "mean_exit_layer": point["mean_exit_layer"],
        "layer_speedup": point["layer_speedup"],
    }
    if certification is None:
        return report
    criterion, epsilon = certification["criterion"], certification["epsilon"]
    if criterion == "consistency":
        report["promised_consistency"] = 1.0 - epsilon
    else:
        report["promised_accuracy_drop_at_most"] = epsilon
        report["realised_accuracy_drop"] = full_accuracy - point["accuracy"] if labelled else None
    risky_rows = point.get(_RISK_COUNTS[criterion])
    if risky_rows is not None:
        from scipy.stats import binom

        report["realised_risk"] = risky_rows / test_sweep["num_examples"]
        report["promise_met"] = bool(report["realised_risk"] <= epsilon)
        report["risk_p_value"] = float(binom.sf(risky_rows - 1, test_sweep["num_examples"], epsilon))
    return {"criterion": criterion, "epsilon": epsilon, "delta": certification["delta"], **report}


def _probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be a probability strictly between 0 and 1 such as 0.05, got {value!r}.")
    return float(value)


def _full_depth_point(sweep: dict) -> dict:
    """The point of threshold 0 (every row runs every layer) for a sweep that did not simulate it."""
    num_layers, num_examples = sweep["num_layers"], sweep["num_examples"]
    point = {
        "threshold": 0.0, "consistency": 1.0, "inconsistent_rows": 0, "mean_exit_layer": float(num_layers),
        "layer_speedup": 1.0, "exit_histogram": [0] * (num_layers - 1) + [num_examples],
    }
    if sweep.get("full_accuracy") is not None:
        point.update(accuracy=sweep["full_accuracy"], relative_accuracy=1.0, lost_rows=0)
    return point


def _guarantee(criterion: str, epsilon: float, delta: float, num_examples: int, threshold: float) -> str:
    risk = (
        f"consistency with the full model (early prediction == full prediction) >= {1 - epsilon:g}"
        if criterion == "consistency"
        else f"P(full model right, early exit wrong) <= {epsilon:g}, so accuracy >= full accuracy - {epsilon:g}"
    )
    return (
        f"For new rows drawn i.i.d. from the distribution of the {num_examples} calibration rows, threshold "
        f"{threshold:g} has {risk}, with probability >= {1 - delta:g} over the draw of the calibration rows. Not "
        "promised under distribution shift (other domains, lengths or languages, a changed model, another inference "
        "precision), nor for rows the exits were trained on."
    )


def save_curve(
    sweep: dict,
    output_dir,
    chosen: Optional[dict] = None,
    title: str = "Early exit",
    record: Optional[dict] = None,
) -> List[Path]:
    """Write `calibration.json` (the sweep, `chosen`, and the entries of `record`) and `calibration.png`.

    The plot shows, against the threshold, consistency with the full model, % of full accuracy (labelled sweeps)
    and the layer speed-up; with a `record["certification"]`, also the promised consistency (or accuracy) line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {**sweep, "chosen": chosen, **(record or {})}
    json_path = output_dir / "calibration.json"
    staging = output_dir / ".calibration.json.partial"
    staging.write_text(json.dumps(payload, indent=2) + "\n")
    staging.replace(json_path)

    points = sweep["points"]
    labelled = sweep.get("full_accuracy") is not None
    thresholds = [point["threshold"] for point in points]
    speedup = [point["layer_speedup"] for point in points]
    figure, quality_axis = plt.subplots(figsize=(6.4, 4.2))
    if "consistency" in points[0]:
        quality_axis.plot(thresholds, [100.0 * point["consistency"] for point in points], color="tab:green",
                          label="% consistent with the full model")
    if labelled:
        relative = [100.0 * point["relative_accuracy"] for point in points]
        quality_axis.plot(thresholds, relative, color="tab:blue", label="% of full-model accuracy")
        if sweep.get("confidence") is not None:
            lower = [100.0 * point["relative_accuracy_lower_bound"] for point in points]
            quality_axis.plot(thresholds, lower, color="tab:blue", linestyle=":", linewidth=1)
            quality_axis.fill_between(thresholds, lower, relative, color="tab:blue", alpha=0.12, linewidth=0,
                                      label=f"{sweep['confidence']:.0%} lower bound")
    certification = (record or {}).get("certification")
    if certification is not None:
        epsilon = certification["epsilon"]
        promise = 100.0 * (1.0 - epsilon if certification["criterion"] == "consistency"
                           else 1.0 - epsilon / max(sweep["full_accuracy"], epsilon))
        quality_axis.axhline(promise, color="grey", linewidth=0.8, linestyle="-.",
                             label=f"promise ({1 - certification['delta']:.0%} sure)")
        quality_axis.axvspan(0.0, certification["chosen"]["threshold"], color="tab:green", alpha=0.08, linewidth=0,
                             label="certified thresholds")
    quality_axis.legend(loc="lower left", fontsize=8)
    quality_axis.set_xlabel("entropy threshold (normalised)")
    quality_axis.set_ylabel("% of the full model")
    speed_axis = quality_axis.twinx()
    speed_axis.plot(thresholds, speedup, color="tab:red", linestyle="--", label="layer speed-up")
    speed_axis.set_ylabel("layer speed-up (layers / mean exit layer)", color="tab:red")
    if chosen is not None:
        shown = "relative_accuracy" if labelled else "consistency"
        quality_axis.axvline(chosen["threshold"], color="grey", linestyle=":")
        quality_axis.annotate(
            f"{chosen['threshold']:.2f}: {100 * chosen[shown]:.1f}%, {chosen['layer_speedup']:.2f}x",
            (chosen["threshold"], 100.0 * chosen[shown]),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=8,
        )
    full = f"full accuracy {100 * sweep['full_accuracy']:.1f}%, " if labelled else ""
    quality_axis.set_title(f"{title} ({full}n={sweep['num_examples']})")
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
        raise ValueError("`texts` is empty: calibration needs at least one text.")
    order = np.argsort([len(text) for text in texts])  # batches of similar length waste little on padding
    collected = []
    for start in tqdm(range(0, len(texts), batch_size), desc="all-layer pass", unit="batch"):
        batch = [texts[index] for index in order[start : start + batch_size]]
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        collected.append(model.exit_logits_per_layer(**encoded))
    layer_logits = np.concatenate(collected, axis=1)
    return layer_logits[:, np.argsort(order)]
