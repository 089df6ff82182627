"""`optimum-cli dynexec label-steps`: the fewest denoising steps each prompt needs to converge (StepSaver labels)."""

from optimum.commands.base import CommandInfo

from .base import PluginCommand
from ..extras import require_extra
from ..stepsaver.defaults import DEFAULT_CANDIDATE_STEPS, DEFAULT_REFERENCE_STEPS, DEFAULT_SSIM_THRESHOLD


class LabelStepsCommand(PluginCommand):
    COMMAND = CommandInfo(
        name="label-steps",
        help="Render prompts at increasing step counts (fixed seed) and record the first count whose image has "
        "converged to the high-step reference (SSIM). Resumable.",
    )

    @staticmethod
    def parse_args(parser):
        parser.add_argument("--pipeline", required=True, help="OpenVINO Stable Diffusion folder (or a diffusers one, "
                            "exported on the fly).")
        parser.add_argument("--prompts", required=True, help="Text file, one prompt per line.")
        parser.add_argument("--output", required=True, help="Labels JSON file; an existing one is resumed.")
        parser.add_argument("--ssim-threshold", type=float, default=DEFAULT_SSIM_THRESHOLD,
                            help="SSIM to the reference image that counts as converged (default %(default)s).")
        parser.add_argument("--candidate-steps", default=",".join(map(str, DEFAULT_CANDIDATE_STEPS)),
                            help="Increasing step counts to try, comma-separated (default %(default)s).")
        parser.add_argument("--reference-steps", type=int, default=DEFAULT_REFERENCE_STEPS,
                            help="Steps of the reference image each candidate is compared with (default %(default)s).")
        parser.add_argument("--guidance-scale", type=float, default=7.5,
                            help="Classifier-free guidance scale (default %(default)s).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the initial latents (default %(default)s).")
        parser.add_argument("--height", type=int, default=None, help="Image height (default: the pipeline's).")
        parser.add_argument("--width", type=int, default=None, help="Image width (default: the pipeline's).")
        parser.add_argument("--device", default="CPU", help="OpenVINO device (default %(default)s).")
        parser.add_argument("--threads", type=int, default=None,
                            help="OpenVINO inference threads (default: the plugin's choice, all cores).")

    def run(self):
        require_extra("diffusers", command="label-steps")

        from pathlib import Path

        from optimum.intel import OVStableDiffusionPipeline

        from ..stepsaver.labels import LabelSettings, label_prompts

        args = self.args
        try:
            candidate_steps = [int(value) for value in args.candidate_steps.split(",") if value.strip()]
        except ValueError:
            raise ValueError(f"`--candidate-steps` must be comma-separated integers, got {args.candidate_steps!r}.")
        prompts_path = Path(args.prompts)
        if not prompts_path.is_file():
            raise ValueError(f"`--prompts` file {prompts_path} does not exist.")
        prompts = [line.strip() for line in prompts_path.read_text().splitlines() if line.strip()]
        if not prompts:
            raise ValueError(f"`--prompts` file {prompts_path} holds no prompts (one per line expected).")
        settings = LabelSettings(
            pipeline=str(Path(args.pipeline).resolve()),
            seed=args.seed,
            ssim_threshold=args.ssim_threshold,
            candidate_steps=candidate_steps,
            reference_steps=args.reference_steps,
            guidance_scale=args.guidance_scale,
            height=args.height,
            width=args.width,
        )
        settings.validate()
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"`--threads` must be a positive integer, got {args.threads}.")
        ov_config = {"INFERENCE_NUM_THREADS": str(args.threads)} if args.threads else None
        pipeline = OVStableDiffusionPipeline.from_pretrained(args.pipeline, device=args.device, ov_config=ov_config)
        pipeline.set_progress_bar_config(disable=True)  # one bar over prompts, not one per image
        labels = label_prompts(pipeline, prompts, Path(args.output), settings)
        steps = sorted(label["num_inference_steps"] for label in labels)
        print(f"{len(labels)} labels in {args.output}; median {steps[len(steps) // 2]} steps, "
              f"range {steps[0]}-{steps[-1]}.")
