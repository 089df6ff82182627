"""OVStepSaverStableDiffusionPipeline: OpenVINO Stable Diffusion that runs, per prompt, only the steps it needs.

Data flow: prompt -> step predictor -> num_inference_steps (clamped to [min_inference_steps, max_inference_steps],
overridden by an explicit `num_inference_steps`) -> the unchanged OpenVINO Stable Diffusion loop. Prompts of one call
that get different counts are run as one sub-batch per count, and their images are put back in the caller's order.
"""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from optimum.intel import OVStableDiffusionPipeline

from .defaults import DEFAULT_MAX_INFERENCE_STEPS, DEFAULT_MIN_INFERENCE_STEPS
from .predictor import StepPredictor

STEPSAVER_CONFIG_NAME = "stepsaver_config.json"
STEP_PREDICTOR_SUBFOLDER = "step_predictor"

# The arguments of StableDiffusionPipeline.__call__, so positional calls are read exactly as diffusers reads them.
_CALL_SIGNATURE = inspect.signature(StableDiffusionPipeline.__call__)
# Arguments that hold one entry per image (batch * num_images_per_prompt) or per prompt, and so must be split
# between the sub-batches.
_PER_PROMPT_ARGUMENTS = ("negative_prompt",)
_PER_IMAGE_ARGUMENTS = ("generator", "latents")


@dataclass
class StepSaverPipelineOutput(StableDiffusionPipelineOutput):
    """`StableDiffusionPipelineOutput` plus the number of denoising steps each image was made with.

    Args:
        num_inference_steps (`List[int]`): one entry per image, in the order of `images`.
    """

    num_inference_steps: Optional[List[int]] = None


class OVStepSaverStableDiffusionPipeline(OVStableDiffusionPipeline):
    """An `OVStableDiffusionPipeline` whose step count, when the caller gives none, is predicted per prompt.

    Everything the parent accepts is accepted unchanged. New keyword-only arguments (of the constructor and of
    `from_pretrained`):

        step_predictor (`StepPredictor`, *optional*): the prompt -> steps model. `from_pretrained` loads it from the
            `step_predictor/` folder when present. Without one, the pipeline behaves exactly like its parent.
        min_inference_steps / max_inference_steps (`int`): the range predictions are clamped to (defaults 4 and
            100, or the values saved in `stepsaver_config.json`).
        step_predictor_quantization_config: quantization for the predictor only; by default the predictor follows
            `quantization_config` / `load_in_8bit` (as 8-bit weights: it is too small for anything coarser).

    Calling the pipeline without `num_inference_steps` runs each prompt with its predicted count; an explicit
    `num_inference_steps` (or `timesteps` / `sigmas`) always wins. The output is a `StepSaverPipelineOutput` whose
    `num_inference_steps` lists the count each image was made with.
    """

    def __init__(
        self,
        *args,
        step_predictor: Optional[StepPredictor] = None,
        min_inference_steps: int = DEFAULT_MIN_INFERENCE_STEPS,
        max_inference_steps: int = DEFAULT_MAX_INFERENCE_STEPS,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if step_predictor is not None and not isinstance(step_predictor, StepPredictor):
            raise TypeError(
                f"`step_predictor` must be a StepPredictor, got {type(step_predictor).__name__}; load one with "
                "`StepPredictor.from_pretrained(<folder>)`."
            )
        self.step_predictor = step_predictor
        self.set_step_range(min_inference_steps, max_inference_steps)

    def set_step_range(self, min_inference_steps: int, max_inference_steps: int) -> None:
        """Clamp future predictions to `[min_inference_steps, max_inference_steps]`."""
        for name, value in (("min_inference_steps", min_inference_steps), ("max_inference_steps", max_inference_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if min_inference_steps > max_inference_steps:
            raise ValueError(
                f"`min_inference_steps` ({min_inference_steps}) must not exceed `max_inference_steps` "
                f"({max_inference_steps})."
            )
        self.min_inference_steps = min_inference_steps
        self.max_inference_steps = max_inference_steps

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def _from_pretrained(
        cls,
        model_id,
        config,
        *,
        step_predictor: Optional[StepPredictor] = None,
        min_inference_steps: Optional[int] = None,
        max_inference_steps: Optional[int] = None,
        step_predictor_quantization_config=None,
        **kwargs,
    ):
        pipeline = super()._from_pretrained(model_id, config, **kwargs)
        folder = Path(model_id)
        saved = {}
        if (folder / STEPSAVER_CONFIG_NAME).is_file():
            saved = json.loads((folder / STEPSAVER_CONFIG_NAME).read_text())
        if step_predictor is None and (folder / STEP_PREDICTOR_SUBFOLDER).is_dir():
            step_predictor = StepPredictor.from_pretrained(
                folder / STEP_PREDICTOR_SUBFOLDER,
                device=kwargs.get("device", "CPU"),
                ov_config=kwargs.get("ov_config"),
                quantization_config=cls._predictor_quantization(
                    step_predictor_quantization_config, kwargs.get("quantization_config"), kwargs.get("load_in_8bit")
                ),
            )
        if step_predictor is not None and not isinstance(step_predictor, StepPredictor):
            raise TypeError(
                f"`step_predictor` must be a StepPredictor, got {type(step_predictor).__name__}; load one with "
                "`StepPredictor.from_pretrained(<folder>)`."
            )
        pipeline.step_predictor = step_predictor
        pipeline.set_step_range(
            min_inference_steps or saved.get("min_inference_steps", DEFAULT_MIN_INFERENCE_STEPS),
            max_inference_steps or saved.get("max_inference_steps", DEFAULT_MAX_INFERENCE_STEPS),
        )
        return pipeline

    @staticmethod
    def _predictor_quantization(own_config, pipeline_config, load_in_8bit):
        if own_config is not None:
            return own_config
        if pipeline_config is None and not load_in_8bit:
            return None
        from optimum.intel import OVWeightQuantizationConfig

        return OVWeightQuantizationConfig(bits=8)

    def _save_pretrained(self, save_directory: Union[str, Path]):
        """The parent's files unchanged, plus `step_predictor/` and `stepsaver_config.json`."""
        super()._save_pretrained(save_directory)
        save_directory = Path(save_directory)
        if self.step_predictor is not None:
            self.step_predictor.save_pretrained(save_directory / STEP_PREDICTOR_SUBFOLDER)
        stepsaver_config = {
            "min_inference_steps": self.min_inference_steps,
            "max_inference_steps": self.max_inference_steps,
        }
        (save_directory / STEPSAVER_CONFIG_NAME).write_text(json.dumps(stepsaver_config, indent=2) + "\n")

    # ------------------------------------------------------------------------------------------------ inference

    def predict_num_inference_steps(self, prompt: Union[str, List[str]]) -> List[int]:
        """The step count the pipeline would use for each prompt: the predictor's answer, clamped to the range."""
        if self.step_predictor is None:
            raise ValueError(
                "This pipeline has no step predictor. Pass `step_predictor=StepPredictor.from_pretrained(<dir>)` "
                "or load a folder that has a `step_predictor/` sub-folder."
            )
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return [
            min(self.max_inference_steps, max(self.min_inference_steps, steps))
            for steps in self.step_predictor.predict(prompts)
        ]

    def __call__(self, *args, **kwargs):
        """Generate images, as `OVStableDiffusionPipeline.__call__`; see the class docstring for the step count."""
        try:
            bound = _CALL_SIGNATURE.bind(self, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}.__call__: {error}") from None
        arguments = dict(bound.arguments)
        arguments.pop("self")
        arguments.update(arguments.pop("kwargs", {}))
        return_dict = arguments.pop("return_dict", True)
        prompt = arguments.get("prompt")
        num_images_per_prompt = arguments.get("num_images_per_prompt") or 1

        caller_chose_steps = any(arguments.get(name) is not None for name in ("num_inference_steps", "timesteps", "sigmas"))
        if caller_chose_steps or self.step_predictor is None or prompt is None:
            output = super().__call__(**arguments, return_dict=True)
            schedule = arguments.get("timesteps") or arguments.get("sigmas")
            steps = len(schedule) if schedule is not None else (
                arguments.get("num_inference_steps") or _CALL_SIGNATURE.parameters["num_inference_steps"].default
            )
            return self._output(output.images, output.nsfw_content_detected, [steps] * len(output.images), return_dict)

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        predicted = self.predict_num_inference_steps(prompts)
        prompt_indices_by_steps: Dict[int, List[int]] = defaultdict(list)
        for prompt_index, steps in enumerate(predicted):
            prompt_indices_by_steps[steps].append(prompt_index)

        images_in_order: List = [None] * (len(prompts) * num_images_per_prompt)
        nsfw_in_order: List = [None] * len(images_in_order)
        steps_in_order: List[int] = [0] * len(images_in_order)
        for steps, prompt_indices in prompt_indices_by_steps.items():
            image_indices = [p * num_images_per_prompt + i for p in prompt_indices for i in range(num_images_per_prompt)]
            group_arguments = self._select(arguments, prompts, prompt_indices, image_indices)
            output = super().__call__(**group_arguments, num_inference_steps=steps, return_dict=True)
            for position, image_index in enumerate(image_indices):
                images_in_order[image_index] = output.images[position]
                if output.nsfw_content_detected is not None:
                    nsfw_in_order[image_index] = output.nsfw_content_detected[position]
                steps_in_order[image_index] = steps

        nsfw = None if all(flag is None for flag in nsfw_in_order) else nsfw_in_order
        return self._output(_stack_like(images_in_order, output.images), nsfw, steps_in_order, return_dict)

    @staticmethod
    def _select(arguments: dict, prompts: List[str], prompt_indices: List[int], image_indices: List[int]) -> dict:
        """The call arguments restricted to some prompts (and their images)."""
        selected = dict(arguments, prompt=[prompts[i] for i in prompt_indices])
        for name in _PER_PROMPT_ARGUMENTS:
            value = arguments.get(name)
            if isinstance(value, (list, tuple)):
                if len(value) != len(prompts):
                    raise ValueError(f"`{name}` has {len(value)} entries but there are {len(prompts)} prompts.")
                selected[name] = [value[i] for i in prompt_indices]
        for name in _PER_IMAGE_ARGUMENTS:
            value = arguments.get(name)
            if isinstance(value, (list, tuple)) or (isinstance(value, torch.Tensor) and value.ndim == 4):
                if len(value) != len(prompts) * (arguments.get("num_images_per_prompt") or 1):
                    raise ValueError(
                        f"`{name}` has {len(value)} entries but the call makes "
                        f"{len(prompts) * (arguments.get('num_images_per_prompt') or 1)} images; give one per image."
                    )
                selected[name] = value[image_indices] if isinstance(value, torch.Tensor) else [value[i] for i in image_indices]
        for name in ("prompt_embeds", "negative_prompt_embeds", "ip_adapter_image", "ip_adapter_image_embeds"):
            if arguments.get(name) is not None:
                raise ValueError(
                    f"`{name}` cannot be split between prompts that need different step counts; pass "
                    "`num_inference_steps` explicitly when using it."
                )
        return selected

    @staticmethod
    def _output(images, nsfw_content_detected, num_inference_steps: List[int], return_dict: bool):
        if not return_dict:
            return images, nsfw_content_detected, num_inference_steps
        return StepSaverPipelineOutput(
            images=images, nsfw_content_detected=nsfw_content_detected, num_inference_steps=num_inference_steps
        )


def _stack_like(items: list, example):
    """Put per-image results back into the container type the pipeline returned (list, numpy array or tensor)."""
    if isinstance(example, np.ndarray):
        return np.stack(items)
    if isinstance(example, torch.Tensor):
        return torch.stack(items)
    return list(items)
