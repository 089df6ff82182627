"""Image quality without a downloaded network, for the shapes Stable Diffusion fixture.

The StepSaver paper reports FID, which scores images with an ImageNet-trained Inception network; nothing can be
downloaded here. The fixture's images come from a known grammar, though, so a small judge network can be trained on
the grammar's own procedural renders (exactly what the fixture was trained to imitate) and then read generated
images back. Two scores come from it:

* `prompt_fidelity`: the fraction of a prompt's checkable facts the judge reads from the image: the background
  colour, each shape colour named, each shape kind named, and the number of shapes. It asks "does the image show
  what was asked", per image, like a CLIP score.
* `frechet_distance`: FID's formula on the judge's feature layer, between a set of generated images and a fixed set
  of procedural renders of the grammar. It asks "do the images look like the real thing", over a set, like FID.

Both depend only on the fixture's grammar (`fixtures.stable_diffusion`), never on the pipeline being judged. The
judge is trained once (about a minute on two cores) and cached beside the fixtures.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass
from typing import FrozenSet, List, Optional, Sequence

import numpy as np

from ..fixtures import stable_diffusion
from optimum_dynexec.utils.io import atomic_directory

from ..fixtures.cache import fixture_cache_dir
from ..fixtures.stable_diffusion import COLOURS, COUNT_WORDS, IMAGE_SIZE, SHAPES, Scene, render_scene, sample_scene

_COLOUR_NAMES = tuple(COLOURS)
_MAX_SHAPES = 5  # many_mixed draws at most 3 + 2
# The judge's logits, in order: background colour (one of 9), a flag per shape colour, a flag per shape kind, the
# shape count (0 to _MAX_SHAPES). The training target has the same layout with the background and count as indices.
_BACKGROUND = slice(0, len(_COLOUR_NAMES))
_COLOUR_FLAGS = slice(_BACKGROUND.stop, _BACKGROUND.stop + len(_COLOUR_NAMES))
_KIND_FLAGS = slice(_COLOUR_FLAGS.stop, _COLOUR_FLAGS.stop + len(SHAPES))
_COUNT = slice(_KIND_FLAGS.stop, _KIND_FLAGS.stop + _MAX_SHAPES + 1)
_COUNT_OF_WORD = {"a": 1, "an": 1, **{word: count for count, word in COUNT_WORDS.items() if count > 1}}


@dataclass(frozen=True)
class PromptFacts:
    """What a caption of the fixture's grammar says about its image, in a form the judge can check."""

    background: str
    shape_colours: FrozenSet[str]
    shape_kinds: FrozenSet[str]
    shape_count: int

    @classmethod
    def of_scene(cls, scene: Scene) -> "PromptFacts":
        return cls(scene.background, frozenset(s.colour for s in scene.shapes), frozenset(s.kind for s in scene.shapes),
                   len(scene.shapes))

    @classmethod
    def of_prompt(cls, prompt: str) -> "PromptFacts":
        """Parse a caption of the fixture's grammar; `ValueError` for any other text (it cannot be judged)."""
        words = prompt.lower().split()
        if len(words) < 3 or words[-1] != "background" or words[-2] not in COLOURS:
            raise ValueError(f"{prompt!r} is not a caption of the shapes fixture's grammar (it must end with "
                             "'<colour> background'); the shape judge can only score those prompts.")
        colours, kinds, count, group = set(), set(), 0, 0
        for word in words[:-2]:
            if word in _COUNT_OF_WORD:
                group = _COUNT_OF_WORD[word]
            elif word in COLOURS:
                colours.add(word)
            elif word.rstrip("s") in SHAPES:
                kinds.add(word.rstrip("s"))
                count += group
        return cls(words[-2], frozenset(colours), frozenset(kinds), count)


def _fact_targets(facts: PromptFacts) -> np.ndarray:
    """Facts as the judge's training target: background index, 9 colour flags, 3 kind flags, count."""
    return np.array([_COLOUR_NAMES.index(facts.background)]
                    + [name in facts.shape_colours for name in _COLOUR_NAMES]
                    + [kind in facts.shape_kinds for kind in SHAPES] + [facts.shape_count], dtype=np.float32)


@dataclass
class JudgeRecipe:
    """Everything that determines the trained judge (part of its cache key)."""

    seed: int = 0
    train_images: int = 16000
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    width: int = 32


def _network(width: int):
    import torch
    from torch import nn

    class ShapeJudgeNetwork(nn.Module):
        """Three conv blocks (32 -> 16 -> 8 -> 4 pixels); the global max and mean of every block's maps (whether a
        colour or a kind is present does not depend on where, and an 8-pixel shape's outline is only visible at the
        finer scales) feed a 64-wide feature layer and one head per kind of fact."""

        def __init__(self):
            super().__init__()

            def block(inputs, outputs):
                return nn.Sequential(
                    nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(),
                    nn.Conv2d(outputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(), nn.MaxPool2d(2))

            self.blocks = nn.ModuleList([block(3, width), block(width, 2 * width), block(2 * width, 4 * width)])
            self.features = nn.Sequential(nn.Linear(2 * 7 * width, 64), nn.ReLU())
            self.heads = nn.Linear(64, _COUNT.stop)

        def forward(self, images):
            pooled, maps = [], images
            for block in self.blocks:
                maps = block(maps)
                pooled += [maps.amax(dim=(2, 3)), maps.mean(dim=(2, 3))]
            features = self.features(torch.cat(pooled, dim=1))
            return features, self.heads(features)

    torch.manual_seed(0)
    return ShapeJudgeNetwork()


def _as_input(images: np.ndarray):
    import torch

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"The shape judge takes (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) images, got {images.shape}.")
    if images.dtype != np.uint8:
        raise TypeError(f"The shape judge takes uint8 images (0-255), got {images.dtype}.")
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _loss(logits, targets):
    import torch.nn.functional as F

    background = F.cross_entropy(logits[:, _BACKGROUND], targets[:, 0].long())
    flags = F.binary_cross_entropy_with_logits(logits[:, _COLOUR_FLAGS.start : _KIND_FLAGS.stop], targets[:, 1:-1])
    count = F.cross_entropy(logits[:, _COUNT], targets[:, -1].long())
    return background + flags + count


def _read_facts(logits) -> List[PromptFacts]:
    return [
        PromptFacts(
            _COLOUR_NAMES[int(row[_BACKGROUND].argmax())],
            frozenset(name for name, flag in zip(_COLOUR_NAMES, row[_COLOUR_FLAGS]) if flag > 0),
            frozenset(kind for kind, flag in zip(SHAPES, row[_KIND_FLAGS]) if flag > 0),
            int(row[_COUNT].argmax()),
        )
        for row in logits.numpy()
    ]


def procedural_set(count: int, seed: int):
    """`count` scenes drawn by the fixture's grammar (seeded): their rendered images and facts, what the judge learns."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(count)]
    return np.stack([render_scene(scene) for scene in scenes]), [PromptFacts.of_scene(scene) for scene in scenes]


class ShapeJudge:
    """The trained judge. Get it with `ShapeJudge.load()` (trains and caches it on first use)."""

    def __init__(self, network, recipe: JudgeRecipe, metrics: dict):
        self.network = network.eval()
        self.recipe = recipe
        self.metrics = metrics
        self._reference_features = None

    @classmethod
    def load(cls, recipe: Optional[JudgeRecipe] = None, progress: bool = True) -> "ShapeJudge":
        import torch

        recipe = recipe or JudgeRecipe()
        key = "-".join(str(value) for value in asdict(recipe).values())
        entry = fixture_cache_dir() / f"shape-judge-{key}-{judge_code_fingerprint()}"
        if not entry.exists():
            network, metrics = _train(recipe, progress)
            with atomic_directory(entry) as staging:
                torch.save(network.state_dict(), staging / "judge.pt")
                (staging / "metrics.json").write_text(json.dumps(metrics, indent=1))
        network = _network(recipe.width)
        network.load_state_dict(torch.load(entry / "judge.pt", weights_only=True))
        return cls(network, recipe, json.loads((entry / "metrics.json").read_text()))

    def _run(self, images: np.ndarray):
        import torch

        with torch.no_grad():
            outputs = [self.network(chunk) for chunk in _as_input(images).split(256)]
        return torch.cat([f for f, _ in outputs]), torch.cat([logits for _, logits in outputs])

    def read(self, images: np.ndarray) -> List[PromptFacts]:
        """The facts the judge reads from each image."""
        return _read_facts(self._run(images)[1])

    def prompt_fidelity(self, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """Per image, the fraction of its prompt's facts the judge reads back: the background, each named shape
        colour present, each named kind present, the exact shape count. 1.0 = everything asked for is there."""
        return self.fidelity_and_features(images, prompts)[0]

    def fidelity_and_features(self, images: np.ndarray, prompts: Sequence[str]):
        """`(prompt_fidelity(images, prompts), features(images))` from one pass of the network."""
        if len(images) != len(prompts):
            raise ValueError(f"Got {len(images)} images for {len(prompts)} prompts; pass one prompt per image.")
        asked = [PromptFacts.of_prompt(prompt) for prompt in prompts]
        features, logits = self._run(images)
        fidelity = np.array([judge_fidelity(seen, facts) for seen, facts in zip(_read_facts(logits), asked)])
        return fidelity, features.numpy().astype(np.float64)

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._run(images)[0].numpy().astype(np.float64)

    def frechet_distance(self, images: np.ndarray, reference_count: int = 2000, seed: int = 12345) -> float:
        """FID's formula on the judge's features: `images` against `reference_count` procedural renders of the
        grammar (the same set on every call). Lower is better; comparable only between sets of the same size."""
        return self.frechet_distance_of_features(self.features(images), reference_count, seed)

    def frechet_distance_of_features(self, features: np.ndarray, reference_count: int = 2000,
                                     seed: int = 12345) -> float:
        """`frechet_distance` from features already computed with `features()` (for resampling without re-running)."""
        if len(features) < 2:
            raise ValueError("A Frechet distance needs at least two images.")
        if self._reference_features is None or len(self._reference_features) != reference_count:
            self._reference_features = self.features(procedural_set(reference_count, seed)[0])
        theirs = self._reference_features
        mean_gap = features.mean(0) - theirs.mean(0)
        cov_ours, cov_theirs = np.cov(features, rowvar=False), np.cov(theirs, rowvar=False)
        # trace sqrt(A B) = trace sqrt(sqrt(A) B sqrt(A)), a symmetric form that stays exact when dead ReLU
        # features make the covariances singular (where scipy's sqrtm of A B warns and loses precision).
        root_ours = _symmetric_sqrt(cov_ours)
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_ours @ cov_theirs @ root_ours), 0.0, None)).sum()
        return float(mean_gap @ mean_gap + np.trace(cov_ours) + np.trace(cov_theirs) - 2 * cross)


def judge_code_fingerprint() -> str:
    """A hash of the code that decides what a trained judge is (this module: network, targets, loss, training; the
    grammar's scene sampler and renderer), part of the cache key so that a changed judge is never read from an
    entry trained by an older one."""
    sources = [inspect.getsource(inspect.getmodule(judge_code_fingerprint))]
    sources += [inspect.getsource(getattr(stable_diffusion, name)) for name in GRAMMAR_CODE]
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:12]


# What the training images and their facts come from (`procedural_set`), in fixtures.stable_diffusion.
GRAMMAR_CODE = ("sample_scene", "render_scene", "_other_colour", "_jittered", "_free_spots", "_article",
                 "_count_word", "_plural", "Shape", "Scene")


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _train(recipe: JudgeRecipe, progress: bool):
    """Train on procedural renders with mild noise and blur (generated images are never pixel-exact); held-out
    accuracy per fact goes into the metrics."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    images, facts = procedural_set(recipe.train_images, recipe.seed)
    held_out_images, held_out_facts = procedural_set(2000, recipe.seed + 1)
    inputs, targets = _as_input(images), torch.from_numpy(np.stack([_fact_targets(f) for f in facts]))
    network = _network(recipe.width)
    optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=1e-4)
    steps = recipe.epochs * (len(inputs) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.learning_rate, total_steps=steps)
    generator = torch.Generator().manual_seed(recipe.seed)
    network.train()
    with tqdm(total=steps, desc="Shape judge", disable=not progress, dynamic_ncols=True) as bar:
        for _ in range(recipe.epochs):
            for batch in torch.randperm(len(inputs), generator=generator).split(recipe.batch_size)[: steps // recipe.epochs]:
                x = inputs[batch]
                blur = torch.rand(len(x), 1, 1, 1, generator=generator) * 0.6
                x = (1 - blur) * x + blur * F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
                x = x + torch.randn(x.shape, generator=generator) * 0.05 * torch.rand(len(x), 1, 1, 1, generator=generator)
                loss = _loss(network(x)[1], targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                bar.update()
    judge = ShapeJudge(network, recipe, {})
    read = judge.read(held_out_images)
    metrics = {
        "held_out_images": len(held_out_facts),
        "background_accuracy": float(np.mean([r.background == f.background for r, f in zip(read, held_out_facts)])),
        "colours_exact": float(np.mean([r.shape_colours == f.shape_colours for r, f in zip(read, held_out_facts)])),
        "kinds_exact": float(np.mean([r.shape_kinds == f.shape_kinds for r, f in zip(read, held_out_facts)])),
        "count_accuracy": float(np.mean([r.shape_count == f.shape_count for r, f in zip(read, held_out_facts)])),
        "prompt_fidelity_of_procedural_images": float(np.mean(
            [judge_fidelity(r, f) for r, f in zip(read, held_out_facts)])),
    }
    return network.eval(), metrics


def judge_fidelity(seen: PromptFacts, asked: PromptFacts) -> float:
    """The fidelity of one reading against what was asked (see `ShapeJudge.prompt_fidelity`)."""
    checks = [seen.background == asked.background, seen.shape_count == asked.shape_count]
    checks += [colour in seen.shape_colours for colour in asked.shape_colours]
    checks += [kind in seen.shape_kinds for kind in asked.shape_kinds]
    return float(np.mean(checks))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Train (or load) the judge and print its held-out accuracy."""
    import argparse

    parser = argparse.ArgumentParser(description="Train the shapes fixture's no-network quality judge.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(ShapeJudge.load().metrics, indent=1))


if __name__ == "__main__":
    main()
