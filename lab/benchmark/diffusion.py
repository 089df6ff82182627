"""StepSaver benchmark: images/hour and quality of predicted step counts against fixed counts, in one run.

For every held-out prompt (one seed each) the same OpenVINO pipeline renders the image with StepSaver's predicted
count and with each fixed count (30, 50, 100 by default). Calls are interleaved per prompt, in a shuffled order, so
the machine's load drifts equally over all configurations; each configuration's time is the median over repeats.

Quality, per image:
  * SSIM and PSNR to the image of the highest fixed count with the same prompt and seed (the reference);
  * `prompt_colour_score`, which needs no downloaded network: the fraction of pixels whose colour is (within a small
    tolerance) one of the palette colours the prompt names. Unconverged images have muddy, in-between colours, and
    wrong colours are off-prompt, both of which lower it;
  * `prompt_fidelity` (unless `--no-judge`; shapes-fixture prompts only): the fraction of the prompt's
    facts (background, shape colours, kinds, count) a judge network trained on the grammar's own renders reads back
    from the image (`shape_judge.py`).

Per configuration, with the judge, also `frechet_distance`: FID's formula on the judge's features against procedural
renders of the grammar, the no-network counterpart of the FID the StepSaver paper reports.

Writes `stepsaver_benchmark.json`, `stepsaver_steps_vs_quality.png` (steps against SSIM per prompt) and
`stepsaver_images.png` (a grid of images to look at) into `--output`, and prints a table.

    python -m lab.benchmark.diffusion --pipeline <stepsaver pipeline dir> --output <dir>
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

STEPSAVER = "stepsaver"
COLOUR_TOLERANCE = 48.0  # RGB distance; palette colours are >= 95 apart, so this never confuses two of them


def prompt_colour_score(image: np.ndarray, prompt: str, palette: Dict[str, tuple]) -> float:
    """Fraction of pixels within `COLOUR_TOLERANCE` of a palette colour that `prompt` names (words of the prompt)."""
    named = [np.array(colour, dtype=np.float32) for name, colour in palette.items() if name in prompt.split()]
    if not named:
        raise ValueError(f"The prompt {prompt!r} names none of the palette colours {sorted(palette)}.")
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    distances = np.min(np.stack([np.linalg.norm(pixels - colour, axis=1) for colour in named]), axis=0)
    return float((distances <= COLOUR_TOLERANCE).mean())


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(image, reference):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, image, data_range=255))


def _to_uint8(image) -> np.ndarray:
    return (np.clip(np.asarray(image), 0.0, 1.0) * 255).round().astype(np.uint8)


def run_benchmark(
    pipeline,
    prompts: Sequence[str],
    fixed_steps: Sequence[int] = (30, 50, 100),
    repeats: int = 3,
    guidance_scale: float = 7.5,
    seed: int = 0,
    progress: bool = True,
    judge=None,
) -> dict:
    """Render every prompt with StepSaver and with each fixed count; return timings, quality and per-prompt rows.

    `judge`: a `shape_judge.ShapeJudge` to add `prompt_fidelity` and `frechet_distance` (shapes-fixture prompts only).
    """
    import torch
    from tqdm.auto import tqdm

    from ..fixtures.stable_diffusion import COLOURS
    from optimum_dynexec.stepsaver.labels import image_similarity

    if pipeline.step_predictor is None:
        raise ValueError("`pipeline` has no step predictor; load a StepSaver pipeline folder with `step_predictor/`.")
    if repeats < 1:
        raise ValueError(f"`repeats` must be at least 1, got {repeats}.")
    fixed_steps = sorted(set(fixed_steps))
    reference_name = f"fixed-{fixed_steps[-1]}"
    configurations = [STEPSAVER] + [f"fixed-{steps}" for steps in fixed_steps]
    seconds = {name: [[0.0] * len(prompts) for _ in range(repeats)] for name in configurations}
    images: Dict[str, List[np.ndarray]] = {name: [None] * len(prompts) for name in configurations}
    steps_used: Dict[str, List[int]] = {name: [0] * len(prompts) for name in configurations}
    order = random.Random(seed)

    def render(name: str, index: int):
        arguments = dict(guidance_scale=guidance_scale, output_type="np",
                         generator=torch.Generator().manual_seed(seed + index))
        if name != STEPSAVER:
            arguments["num_inference_steps"] = int(name.split("-")[1])
        start = time.perf_counter()
        output = pipeline(prompts[index], **arguments)  # StepSaver's time includes the predictor
        return time.perf_counter() - start, output

    total = repeats * len(prompts) * len(configurations)
    with tqdm(total=total, desc="Benchmark", disable=not progress, dynamic_ncols=True) as bar:
        for repeat in range(repeats):
            for index in range(len(prompts)):
                for name in order.sample(configurations, len(configurations)):
                    elapsed, output = render(name, index)
                    seconds[name][repeat][index] = elapsed
                    if repeat == 0:
                        images[name][index] = _to_uint8(output.images[0])
                        steps_used[name][index] = output.num_inference_steps[0]
                    bar.update()

    fidelity, features = {}, {}
    if judge is not None:
        for name in configurations:
            fidelity[name], features[name] = judge.fidelity_and_features(np.stack(images[name]), prompts)
    rows = []
    for index, prompt in enumerate(prompts):
        reference = images[reference_name][index]
        row = {"prompt": prompt, "seed": seed + index}
        for name in configurations:
            row[name] = {
                "num_inference_steps": steps_used[name][index],
                "seconds": statistics.median(seconds[name][repeat][index] for repeat in range(repeats)),
                "ssim": image_similarity(images[name][index], reference),
                "psnr": psnr(images[name][index], reference),
                "prompt_colour_score": prompt_colour_score(images[name][index], prompt, COLOURS),
            }
            if judge is not None:
                row[name]["prompt_fidelity"] = float(fidelity[name][index])
        rows.append(row)

    summary = {}
    baseline_name = "fixed-50" if 50 in fixed_steps else f"fixed-{fixed_steps[len(fixed_steps) // 2]}"
    for name in configurations:
        total_seconds = statistics.median(sum(seconds[name][repeat]) for repeat in range(repeats))
        finite_psnr = [row[name]["psnr"] for row in rows if np.isfinite(row[name]["psnr"])]
        summary[name] = {
            "mean_num_inference_steps": float(np.mean(steps_used[name])),
            "seconds_per_image": total_seconds / len(prompts),
            "images_per_hour": 3600.0 * len(prompts) / total_seconds,
            "mean_ssim": float(np.mean([row[name]["ssim"] for row in rows])),
            "mean_psnr_finite": float(np.mean(finite_psnr)) if finite_psnr else float("inf"),
            "mean_prompt_colour_score": float(np.mean([row[name]["prompt_colour_score"] for row in rows])),
        }
        if judge is not None:
            summary[name]["mean_prompt_fidelity"] = float(np.mean(fidelity[name]))
            summary[name]["frechet_distance"] = judge.frechet_distance_of_features(features[name])
    for name in configurations:
        summary[name]["images_per_hour_vs_fixed_50"] = (summary[name]["images_per_hour"]
                                                        / summary[baseline_name]["images_per_hour"])

    if judge is not None:
        # "Equal quality" as a paired question: StepSaver minus the baseline over the same prompts and seeds, with a
        # bootstrap 95% interval (prompts resampled, the same resample for both configurations).
        resamples = np.random.default_rng(seed).integers(len(prompts), size=(1000, len(prompts)))
        gaps = fidelity[STEPSAVER] - fidelity[baseline_name]
        summary[STEPSAVER][f"prompt_fidelity_gap_vs_{baseline_name}"] = {
            **_interval(gaps.mean(), gaps[resamples].mean(axis=1)),
            "prompts_better": int((gaps > 0).sum()), "prompts_worse": int((gaps < 0).sum()),
        }
        frechet_gaps = [judge.frechet_distance_of_features(features[STEPSAVER][rows])
                        - judge.frechet_distance_of_features(features[baseline_name][rows]) for rows in resamples]
        summary[STEPSAVER][f"frechet_distance_gap_vs_{baseline_name}"] = _interval(
            summary[STEPSAVER]["frechet_distance"] - summary[baseline_name]["frechet_distance"], np.array(frechet_gaps))

    # Fixed cost vs per-step cost, from the fixed-count medians: time = fixed + steps * per_step.
    per_image = [summary[f"fixed-{steps}"]["seconds_per_image"] for steps in fixed_steps]
    per_step, fixed = np.polyfit(fixed_steps, per_image, 1) if len(fixed_steps) > 1 else (float("nan"), float("nan"))
    return {
        "configurations": configurations,
        "reference": reference_name,
        "repeats": repeats,
        "guidance_scale": guidance_scale,
        "num_prompts": len(prompts),
        "seconds_per_step": float(per_step),
        "fixed_seconds_per_image": float(fixed),
        "summary": summary,
        "prompts": rows,
        "_images": images,
    }


def _interval(estimate: float, resampled: np.ndarray) -> dict:
    return {"mean": float(estimate), "ci95": [float(np.quantile(resampled, 0.025)), float(np.quantile(resampled, 0.975))]}


def format_table(result: dict) -> str:
    judged = "mean_prompt_fidelity" in result["summary"][STEPSAVER]
    lines = [
        f"{'configuration':<14}{'mean steps':>11}{'img/hour':>10}{'vs fixed-50':>12}{'SSIM':>8}{'PSNR':>8}"
        f"{'colour score':>14}" + (f"{'fidelity':>10}{'Frechet':>9}" if judged else "")
    ]
    for name in result["configurations"]:
        s = result["summary"][name]
        lines.append(
            f"{name:<14}{s['mean_num_inference_steps']:>11.1f}{s['images_per_hour']:>10.0f}"
            f"{s['images_per_hour_vs_fixed_50']:>11.2f}x{s['mean_ssim']:>8.3f}{s['mean_psnr_finite']:>8.1f}"
            f"{s['mean_prompt_colour_score']:>14.3f}"
            + (f"{s['mean_prompt_fidelity']:>10.3f}{s['frechet_distance']:>9.2f}" if judged else "")
        )
    lines.append(
        f"(SSIM/PSNR against {result['reference']}, same seed; PSNR mean over images not identical to it; "
        f"fixed cost {result['fixed_seconds_per_image'] * 1000:.0f} ms + {result['seconds_per_step'] * 1000:.1f} ms/step"
        + ("; fidelity and Frechet distance from the shape judge" if judged else "") + ")"
    )
    for key, gap in result["summary"][STEPSAVER].items():
        if "_gap_vs_" in key:
            measure, baseline = key.split("_gap_vs_")
            counts = f", {gap['prompts_better']} prompts better, {gap['prompts_worse']} worse" if "prompts_better" in gap else ""
            lines.append(f"StepSaver minus {baseline}, {measure.replace('_', ' ')}: {gap['mean']:+.4f}, "
                         f"95% bootstrap interval [{gap['ci95'][0]:+.4f}, {gap['ci95'][1]:+.4f}]{counts}")
    return "\n".join(lines)


def plot_steps_against_quality(result: dict, path: Path) -> None:
    """Per prompt: SSIM against step count through its fixed-count points, with StepSaver's choice marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    fixed = [name for name in result["configurations"] if name != STEPSAVER]
    for row in result["prompts"]:
        points = sorted([(row[name]["num_inference_steps"], row[name]["ssim"]) for name in fixed + [STEPSAVER]])
        left.plot(*zip(*points), color="0.8", linewidth=0.8, zorder=1)
    left.scatter([row[STEPSAVER]["num_inference_steps"] for row in result["prompts"]],
                 [row[STEPSAVER]["ssim"] for row in result["prompts"]], s=14, color="tab:red", label="StepSaver", zorder=2)
    for name in fixed:
        left.scatter([row[name]["num_inference_steps"] for row in result["prompts"]],
                     [row[name]["ssim"] for row in result["prompts"]], s=8, label=name, zorder=2)
    left.set_xlabel("denoising steps")
    left.set_ylabel(f"SSIM to {result['reference']} (same seed)")
    left.set_title("Steps against quality, one grey line per prompt")
    left.legend(fontsize=8)
    summary = result["summary"]
    score, label = (("mean_prompt_fidelity", "mean prompt fidelity (shape judge, no-network quality)")
                    if "mean_prompt_fidelity" in summary[STEPSAVER]
                    else ("mean_prompt_colour_score", "mean prompt colour score (no-network quality)"))
    for name in result["configurations"]:
        right.scatter(summary[name]["images_per_hour"], summary[name][score], s=40)
        right.annotate(name, (summary[name]["images_per_hour"], summary[name][score]),
                       textcoords="offset points", xytext=(5, 5), fontsize=9)
    right.set_xlabel("images per hour")
    right.set_ylabel(label)
    right.set_title("Throughput against quality")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_image_grid(result: dict, path: Path, max_prompts: int = 12) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["configurations"]
    rows = result["prompts"][:max_prompts]
    figure, axes = plt.subplots(len(rows), len(names), figsize=(1.9 * len(names) + 3.5, 1.7 * len(rows)),
                                squeeze=False)
    for row_index, row in enumerate(rows):
        for column, name in enumerate(names):
            axis = axes[row_index][column]
            axis.imshow(result["_images"][name][row_index], interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(f"{name} ({row[name]['num_inference_steps']})", fontsize=7)
        axes[row_index][0].set_ylabel(row["prompt"].replace(" on ", "\non "), fontsize=6, rotation=0, ha="right",
                                      va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description="StepSaver vs fixed step counts on one OpenVINO pipeline.")
    parser.add_argument("--pipeline", required=True, help="StepSaver pipeline folder (with step_predictor/).")
    parser.add_argument("--prompts", default=None, help="Text file, one prompt per line (default: held-out prompts "
                        "drawn from the fixture's caption grammar).")
    parser.add_argument("--num-prompts", type=int, default=40)
    parser.add_argument("--exclude-labels", default=None,
                        help="Labels JSON whose prompts must not be benchmarked (the predictor's training set).")
    parser.add_argument("--fixed-steps", type=int, nargs="+", default=[30, 50, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO inference threads (same for all runs).")
    parser.add_argument("--no-judge", action="store_true",
                        help="Skip the shape judge's fidelity and Frechet distance (for prompts outside the shapes "
                             "fixture's grammar).")
    parser.add_argument("--output", required=True, help="Folder for the JSON result and the plots.")
    args = parser.parse_args(argv)

    from ..fixtures.stable_diffusion import sample_prompts
    from optimum_dynexec.stepsaver import OVStepSaverStableDiffusionPipeline
    from optimum_dynexec.stepsaver.labels import read_labels

    if args.prompts:
        prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    else:
        excluded = [label["prompt"] for label in read_labels(Path(args.exclude_labels))[1]] if args.exclude_labels else []
        prompts = sample_prompts(args.num_prompts, seed=args.seed, exclude=excluded)
    pipeline = OVStepSaverStableDiffusionPipeline.from_pretrained(
        args.pipeline, ov_config={"INFERENCE_NUM_THREADS": str(args.threads)}
    )
    pipeline.set_progress_bar_config(disable=True)
    judge = None
    if not args.no_judge:
        from .shape_judge import PromptFacts, ShapeJudge

        for prompt in prompts:
            PromptFacts.of_prompt(prompt)  # fail before rendering, not after, on a prompt the judge cannot score
        judge = ShapeJudge.load()
    result = run_benchmark(pipeline, prompts, args.fixed_steps, args.repeats, args.guidance_scale, args.seed,
                           judge=judge)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    plot_steps_against_quality(result, output / "stepsaver_steps_vs_quality.png")
    plot_image_grid(result, output / "stepsaver_images.png")
    result.pop("_images")
    result["command"] = "python -m lab.benchmark.diffusion " + " ".join(argv or __import__("sys").argv[1:])
    (output / "stepsaver_benchmark.json").write_text(json.dumps(result, indent=1))
    print(format_table(result))
    return result


if __name__ == "__main__":
    main()
