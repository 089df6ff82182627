"""`optimum-cli dynexec calibrate-exits`: sweep entropy thresholds on labelled data, plot, pick one."""

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo


class CalibrateExitsCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(
        name="calibrate-exits",
        help="Sweep early-exit entropy thresholds: accuracy vs speed curve (JSON + PNG), pick one for a target accuracy.",
    )

    @staticmethod
    def parse_args(parser):
        parser.add_argument("--model", required=True, help="Exported early-exit OpenVINO folder.")
        parser.add_argument("--dataset", required=True, help="Labelled data (file, folder of splits, or datasets name).")
        parser.add_argument("--split", default="validation")
        parser.add_argument("--text-column", default="text")
        parser.add_argument("--label-column", default="label")
        parser.add_argument("--output", required=True, help="Folder for calibration.json and calibration.png.")
        parser.add_argument(
            "--target-accuracy",
            type=float,
            default=0.99,
            help="Pick the fastest threshold keeping this fraction of the full model's accuracy (default 0.99).",
        )
        parser.add_argument(
            "--confidence",
            type=float,
            default=None,
            help="Require the target with this confidence (e.g. 0.9, a bootstrap lower bound over the examples), "
            "so the pick holds on new data; default: the point estimate.",
        )
        parser.add_argument(
            "--save-threshold", action="store_true", help="Store the picked threshold in the model's config."
        )
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--max-length", type=int, default=128)

    def run(self):
        from transformers import AutoTokenizer

        from ..early_exit import OVEarlyExitModelForSequenceClassification
        from ..early_exit.calibration import collect_layer_logits, pick_threshold, save_curve, sweep_thresholds
        from ..early_exit.data import load_labelled_texts

        args = self.args
        model = OVEarlyExitModelForSequenceClassification.from_pretrained(args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        texts, labels = load_labelled_texts(args.dataset, args.split, args.text_column, args.label_column)
        label2id = model.config.label2id
        unknown = sorted(set(labels) - set(label2id))
        if unknown:
            raise ValueError(f"Labels {unknown[:5]} are not classes of the model ({sorted(label2id)[:10]}...).")
        layer_logits = collect_layer_logits(model, tokenizer, texts, args.batch_size, args.max_length)
        sweep = sweep_thresholds(
            layer_logits,
            [label2id[label] for label in labels],
            model.early_exit_config.exit_temperatures,
            confidence=args.confidence,
        )
        chosen = pick_threshold(sweep, args.target_accuracy)
        paths = save_curve(sweep, args.output, chosen, title=f"Early exit, {args.split}")
        print(f"full-model accuracy {sweep['full_accuracy']:.4f}; layer accuracy " + " ".join(
            f"{accuracy:.3f}" for accuracy in sweep["layer_accuracy"]
        ))
        if chosen is None:
            qualifier = f" with {args.confidence:.0%} confidence" if args.confidence else ""
            print(f"No threshold keeps {args.target_accuracy:.1%} of the full accuracy{qualifier}; keeping the current one.")
        else:
            print(
                f"threshold {chosen['threshold']:.3f}: accuracy {chosen['accuracy']:.4f} "
                f"({chosen['relative_accuracy']:.1%} of full"
                + (f", at least {chosen['relative_accuracy_lower_bound']:.1%} with {args.confidence:.0%} confidence"
                   if args.confidence else "")
                + f"), mean exit layer {chosen['mean_exit_layer']:.2f}, "
                f"layer speed-up {chosen['layer_speedup']:.2f}x"
            )
            if args.save_threshold:
                from ..early_exit.config import EarlyExitConfig

                config = EarlyExitConfig.load(args.model)
                config.entropy_threshold = chosen["threshold"]
                config.save(args.model)
                print(f"Saved entropy_threshold={chosen['threshold']} to {args.model}/early_exit_config.json")
        print("Wrote " + ", ".join(str(path) for path in paths))
