"""StepSaver in a few lines: each prompt gets the denoising steps it needs, predicted from its text.

    python examples/stepsaver_generate.py <stepsaver pipeline folder> [prompt ...]

The folder is one written by `optimum-cli dynexec train-step-predictor --pipeline-output <folder>` (or by
`OVStepSaverStableDiffusionPipeline.save_pretrained`).
"""

import sys

import torch

from optimum_dynexec.stepsaver import OVStepSaverStableDiffusionPipeline

folder = sys.argv[1]
prompts = sys.argv[2:] or [
    "a plain blue background",
    "a big red circle on a white background",
    "three small green triangles and two yellow squares on a black background",
]

pipeline = OVStepSaverStableDiffusionPipeline.from_pretrained(folder)
print("predicted steps:", pipeline.predict_num_inference_steps(prompts))

# No num_inference_steps: each prompt runs its predicted count (prompts sharing a count share a batch).
generators = [torch.Generator().manual_seed(index) for index in range(len(prompts))]
output = pipeline(prompts, generator=generators)
for index, (image, steps) in enumerate(zip(output.images, output.num_inference_steps)):
    image.resize((128, 128)).save(f"stepsaver_{index}.png")
    print(f"stepsaver_{index}.png  {steps:3d} steps  {prompts[index]}")

# An explicit count always wins.
fixed = pipeline(prompts[0], num_inference_steps=50)
print("explicit:", fixed.num_inference_steps)
