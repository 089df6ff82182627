"""Minimal-step labels: for each prompt, the fewest denoising steps whose image has converged.

As in StepSaver (arXiv 2408.02054), a prompt is rendered with a fixed seed at a high reference step count and then at
increasing candidate counts; its label is the first candidate whose image reaches `ssim_threshold` SSIM against the
reference. With a deterministic scheduler (DDIM, eta=0) the same seed starts every count from the same noise, so the
images differ only by how far the denoising has converged.

The labels file is JSON, rewritten atomically after every prompt, so an interrupted run resumes where it stopped and
never leaves a half-written file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..utils.io import write_text_atomically
from .defaults import DEFAULT_CANDIDATE_STEPS, DEFAULT_REFERENCE_STEPS, DEFAULT_SSIM_THRESHOLD

LABELS_FORMAT_VERSION = 1


@dataclass
class LabelSettings:
    """Everything that changes a label; a resumed run must use the same settings as the file it appends to."""

    pipeline: str
    seed: int = 0
    ssim_threshold: float = DEFAULT_SSIM_THRESHOLD
    candidate_steps: List[int] = field(default_factory=lambda: list(DEFAULT_CANDIDATE_STEPS))
    reference_steps: int = DEFAULT_REFERENCE_STEPS
    guidance_scale: float = 7.5
    height: Optional[int] = None
    width: Optional[int] = None

    def validate(self) -> None:
        if not 0.0 < self.ssim_threshold <= 1.0:
            raise ValueError(f"`ssim_threshold` must be in (0, 1], got {self.ssim_threshold}.")
        if not self.candidate_steps or any(steps < 1 for steps in self.candidate_steps):
            raise ValueError(f"`candidate_steps` must be positive step counts, got {self.candidate_steps}.")
        if sorted(set(self.candidate_steps)) != list(self.candidate_steps):
            raise ValueError(f"`candidate_steps` must be strictly increasing, got {self.candidate_steps}.")
        if self.reference_steps <= self.candidate_steps[-1]:
            raise ValueError(
                f"`reference_steps` ({self.reference_steps}) must exceed the largest candidate "
                f"({self.candidate_steps[-1]})."
            )


@dataclass
class StepLabel:
    prompt: str
    num_inference_steps: int
    ssim_by_steps: Dict[int, float]


def image_similarity(image, reference) -> float:
    """SSIM between two RGB images (PIL or uint8 arrays), the paper's convergence measure."""
    from skimage.metrics import structural_similarity

    image, reference = np.asarray(image), np.asarray(reference)
    window = min(7, *image.shape[:2]) | 1  # odd, and no larger than the image (tiny test images)
    return float(structural_similarity(image, reference, channel_axis=-1, data_range=255, win_size=window))


def render(pipeline, prompt: str, num_inference_steps: int, settings: LabelSettings):
    """One image of `prompt` at `num_inference_steps`, always from the same seeded noise."""
    import torch

    output = pipeline(
        prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=settings.guidance_scale,
        height=settings.height,
        width=settings.width,
        generator=torch.Generator().manual_seed(settings.seed),
        output_type="np",
    )
    return (np.clip(output.images[0], 0.0, 1.0) * 255).round().astype(np.uint8)


def label_prompt(pipeline, prompt: str, settings: LabelSettings) -> StepLabel:
    """Render the reference, then candidates in increasing order until one has converged (SSIM >= threshold).

    A prompt no candidate converges for is labelled with the reference count itself.
    """
    reference = render(pipeline, prompt, settings.reference_steps, settings)
    ssim_by_steps: Dict[int, float] = {}
    for steps in settings.candidate_steps:
        ssim_by_steps[steps] = image_similarity(render(pipeline, prompt, steps, settings), reference)
        if ssim_by_steps[steps] >= settings.ssim_threshold:
            return StepLabel(prompt, steps, ssim_by_steps)
    return StepLabel(prompt, settings.reference_steps, ssim_by_steps)


def read_labels(path: Path) -> tuple:
    """(settings dict, list of label dicts) from a labels file."""
    content = json.loads(Path(path).read_text())
    if content.get("format_version") != LABELS_FORMAT_VERSION or "labels" not in content:
        raise ValueError(f"{path} is not a StepSaver labels file (written by `optimum-cli dynexec label-steps`).")
    return content["settings"], content["labels"]


def _write_atomically(path: Path, content: dict) -> None:
    write_text_atomically(path, json.dumps(content, indent=1))


def label_prompts(pipeline, prompts: Sequence[str], output_path: Path, settings: LabelSettings, progress=True) -> List[dict]:
    """Label every prompt not already in `output_path`, saving after each one; returns all labels in the file.

    Raises ValueError if `output_path` holds labels made with different settings (mixing them would make the
    labels inconsistent); choose another output file or delete the old one.
    """
    from tqdm.auto import tqdm

    settings.validate()
    output_path = Path(output_path)
    labels: List[dict] = []
    if output_path.exists():
        recorded_settings, labels = read_labels(output_path)
        if recorded_settings != asdict(settings):
            differing = sorted(k for k in asdict(settings) if recorded_settings.get(k) != asdict(settings)[k])
            raise ValueError(
                f"{output_path} holds labels made with different settings ({', '.join(differing)}); use another "
                "--output or delete the file to start over."
            )
    done = {label["prompt"] for label in labels}
    remaining = [prompt for prompt in dict.fromkeys(prompts) if prompt not in done]
    for prompt in tqdm(remaining, desc="Labelling prompts", disable=not progress, dynamic_ncols=True):
        label = label_prompt(pipeline, prompt, settings)
        labels.append(json.loads(json.dumps(asdict(label))))  # as it reads back: JSON keys are strings
        _write_atomically(output_path, {"format_version": LABELS_FORMAT_VERSION, "settings": asdict(settings),
                                        "labels": labels})
    if not output_path.exists():  # nothing to label: still leave a valid (empty) file behind
        _write_atomically(output_path, {"format_version": LABELS_FORMAT_VERSION, "settings": asdict(settings),
                                        "labels": labels})
    return labels
