"""`optimum-cli dynexec train-step-predictor`: train the StepSaver prompt -> steps model and export it to OpenVINO."""

from optimum.commands.base import CommandInfo

from .base import PluginCommand
from ..extras import require_extra
from ..stepsaver.defaults import (DEFAULT_MAX_INFERENCE_STEPS, DEFAULT_MIN_INFERENCE_STEPS,
                                  PredictorTrainingArguments)


class TrainStepPredictorCommand(PluginCommand):
    COMMAND = CommandInfo(
        name="train-step-predictor",
        help="Train a small text regressor on `label-steps` labels and export it to OpenVINO (a `step_predictor/` "
        "folder); with --pipeline, also write a StepSaver pipeline folder that includes it.",
    )

    @staticmethod
    def parse_args(parser):
        defaults = PredictorTrainingArguments()
        parser.add_argument("--labels", required=True, help="Labels JSON written by `label-steps`.")
        parser.add_argument("--output", required=True, help="Folder for the exported step predictor.")
        parser.add_argument("--tokenizer", default=None,
                            help="Tokenizer folder (default: the labelled pipeline's `tokenizer/`).")
        parser.add_argument("--pipeline-output", default=None,
                            help="Also save the labelled pipeline with this predictor attached, as "
                            "OVStepSaverStableDiffusionPipeline, to this folder.")
        parser.add_argument("--quantile", type=float, default=defaults.quantile,
                            help="Quantile of the step label to predict; above 0.5 errs towards more steps "
                            "(default %(default)s).")
        parser.add_argument("--epochs", type=int, default=defaults.epochs, help="Training epochs (default %(default)s).")
        parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size,
                            help="Width of the predictor's text encoder (default %(default)s).")
        parser.add_argument("--num-layers", type=int, default=defaults.num_layers,
                            help="Layers of the predictor's text encoder (default %(default)s).")
        parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                            help="AdamW learning rate (default %(default)s).")
        parser.add_argument("--seed", type=int, default=defaults.seed, help="Training seed (default %(default)s).")
        parser.add_argument("--min-inference-steps", type=int, default=None,
                            help="--pipeline-output: the pipeline never runs fewer steps "
                            f"(default {DEFAULT_MIN_INFERENCE_STEPS}).")
        parser.add_argument("--max-inference-steps", type=int, default=None,
                            help="--pipeline-output: the pipeline never runs more steps "
                            f"(default {DEFAULT_MAX_INFERENCE_STEPS}).")

    def run(self):
        import json
        from pathlib import Path

        args = self.args
        # Training alone needs no diffusers; the pipeline folder does, so check before the training time is spent.
        if args.pipeline_output:
            require_extra("diffusers", command="train-step-predictor --pipeline-output")

        from ..stepsaver.labels import read_labels
        from ..stepsaver.training import train_from_labels_file

        arguments = PredictorTrainingArguments(
            quantile=args.quantile,
            epochs=args.epochs,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
        predictor = train_from_labels_file(Path(args.labels), Path(args.output), tokenizer=args.tokenizer,
                                           arguments=arguments)
        print(json.dumps(predictor.config.labels["metrics"], indent=2))
        if args.pipeline_output:
            from ..stepsaver.pipeline import OVStepSaverStableDiffusionPipeline

            settings, _ = read_labels(Path(args.labels))
            pipeline = OVStepSaverStableDiffusionPipeline.from_pretrained(
                settings["pipeline"],
                step_predictor=predictor,
                min_inference_steps=args.min_inference_steps,
                max_inference_steps=args.max_inference_steps,
                compile=False,
            )
            pipeline.save_pretrained(args.pipeline_output)
            print(f"StepSaver pipeline saved to {args.pipeline_output}")
