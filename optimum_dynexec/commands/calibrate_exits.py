"""`optimum-cli dynexec calibrate-exits`: certify an early-exit entropy threshold on calibration texts, plot the curve."""

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo

CRITERIA = ("consistency", "accuracy")  # early_exit.calibration.CRITERIA, repeated: parse_args must stay import-light


class CalibrateExitsCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(
        name="calibrate-exits",
        help="Certify an early-exit entropy threshold (consistency with the full model, or accuracy, >= 1 - epsilon "
        "with probability >= 1 - delta on new data) and write the curve (JSON + PNG).",
    )

    @staticmethod
    def parse_args(parser):
        parser.add_argument("--model", required=True, help="Exported early-exit OpenVINO folder.")
        parser.add_argument(
            "--dataset",
            required=True,
            help="Calibration data (file, folder of splits, or datasets name). Labels are optional for "
            "--criterion consistency: a text column alone is enough, so every unlabelled text can calibrate. Do not "
            "use texts the exits were trained on: the guarantee is for new rows.",
        )
        parser.add_argument("--split", default="validation", help="Split to calibrate on. Default: %(default)s.")
        parser.add_argument("--text-column", default="text", help="Default: %(default)s.")
        parser.add_argument(
            "--label-column", default="label", help="Used when present (needed for --criterion accuracy). Default: %(default)s."
        )
        parser.add_argument("--output", required=True, help="Folder for calibration.json and calibration.png.")
        parser.add_argument(
            "--criterion",
            choices=CRITERIA,
            default="consistency",
            help="consistency: the early prediction equals the full model's (no labels needed); accuracy: rows the "
            "full model gets right and the early exit wrong (labels needed; accuracy >= full accuracy - epsilon). "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--epsilon",
            type=float,
            default=0.01,
            help="Risk allowed on new data: consistency >= 1 - epsilon (or accuracy drop <= epsilon). "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--delta",
            type=float,
            default=0.05,
            help="Chance allowed that the calibration texts were unluckily kind, i.e. the promise holds with "
            "probability >= 1 - delta. 0.05 rather than the 0.1 of the Learn-then-Test examples: an unlucky validation "
            "set is the failure this guards against, and the margin it costs grows only like sqrt(log(1 / delta)). "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--fit-share",
            type=float,
            default=0.5,  # early_exit.calibration.DEFAULT_FIT_SHARE, repeated: parse_args must stay import-light
            help="Share of the calibration texts that fit the exits' temperatures (to predict the full model's "
            "answer) before the others certify the threshold; the two parts must be disjoint for the guarantee. "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--test-split",
            default=None,
            help="Held-out split of --dataset to check the chosen threshold on: realised consistency (and accuracy, "
            "if labelled) against the promise, recorded under `held_out`. Default: %(default)s (no check).",
        )
        parser.add_argument(
            "--inference-precision",
            default=None,
            help="OpenVINO INFERENCE_PRECISION_HINT to calibrate at (f32, bf16, f16); the threshold holds at the "
            "precision it was calibrated at. Default: %(default)s (the device's default, recorded in the output).",
        )
        parser.add_argument(
            "--target-accuracy",
            type=float,
            default=None,
            help="The former pick, with no guarantee: the fastest threshold keeping this fraction of the full "
            "model's validation accuracy (with --confidence, its bootstrap lower bound); replaces the certified "
            "pick. Default: %(default)s (certify instead).",
        )
        parser.add_argument(
            "--confidence",
            type=float,
            default=None,
            help="With --target-accuracy (0.99 if not given): require the target at this bootstrap confidence, e.g. "
            "0.9. Default: %(default)s.",
        )
        parser.add_argument(
            "--save-threshold",
            action="store_true",
            help="Store the picked threshold, with how it was picked, in the model's early_exit_config.json. "
            "Default: off.",
        )
        parser.add_argument("--batch-size", type=int, default=64, help="Default: %(default)s.")
        parser.add_argument("--max-length", type=int, default=128, help="Tokens per text. Default: %(default)s.")

    def run(self):
        from transformers import AutoTokenizer

        from ..early_exit import OVEarlyExitModelForSequenceClassification
        from ..early_exit.calibration import (
            certify_exits,
            held_out_report,
            pick_threshold,
            save_curve,
            sweep_thresholds,
        )
        from ..openvino_cpu import compiled_precision

        args = self.args
        for flag, value in (("--epsilon", args.epsilon), ("--delta", args.delta)):
            if not 0.0 < value < 1.0:  # before the all-layer pass, which takes a while
                raise ValueError(f"{flag} is a probability strictly between 0 and 1 such as 0.05, got {value}.")
        if not 0.0 < args.fit_share < 1.0:
            raise ValueError(f"--fit-share is a share of the calibration texts strictly between 0 and 1 such as 0.5, "
                             f"got {args.fit_share}.")
        legacy = args.target_accuracy is not None or args.confidence is not None
        texts, labels = self._texts(args.split, needs_labels=legacy or args.criterion == "accuracy")
        test_texts, test_labels = self._texts(args.test_split, needs_labels=False) if args.test_split else (None, None)
        ov_config = None if args.inference_precision is None else {"INFERENCE_PRECISION_HINT": args.inference_precision}
        model = OVEarlyExitModelForSequenceClassification.from_pretrained(args.model, ov_config=ov_config)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        precision, device = compiled_precision(model), model._device  # optimum-intel keeps the device string there
        temperatures = model.early_exit_config.exit_temperatures
        layer_logits, labels = self._layer_logits(model, tokenizer, texts, labels)
        certification = None
        if legacy:
            sweep = sweep_thresholds(layer_logits, labels, temperatures, confidence=args.confidence)
            chosen = pick_threshold(sweep, args.target_accuracy or 0.99)
        else:
            certification = certify_exits(layer_logits, labels, args.epsilon, args.delta, args.criterion,
                                          args.fit_share)
            sweep, temperatures = certification.pop("sweep"), certification["temperatures"]
            chosen = certification["chosen"]
        precision_record = {
            "inference_precision": precision,
            "device": device,
            "precision_note": f"The threshold applies at {precision} on {device}: another precision rounds the "
            "entropies differently and can move rows near the threshold across it; re-calibrate for it.",
        }
        record = {"calibrated_split": args.split, **precision_record, "certification": certification}
        print(f"Calibrated on {len(texts)} texts of {args.split!r} at inference precision {precision} on {device}; "
              "the threshold applies at that precision.")
        if certification is not None:
            print(f"exit temperatures fitted on {certification['fit_rows']} of them to predict the full model's answer: "
                  + " ".join(f"{value:.3f}" for value in temperatures[:-1])
                  + f"; the threshold certified on the other {sweep['num_examples']}")
        self._print_sweep(sweep)
        self._print_choice(chosen, certification)

        if args.test_split is not None and chosen is not None:
            test_logits, test_labels = self._layer_logits(model, tokenizer, test_texts, test_labels)
            test_sweep = self._sweep(test_logits, temperatures, test_labels, [chosen["threshold"]])
            held_out = {"split": args.test_split, **held_out_report(test_sweep, certification, chosen["threshold"])}
            record["held_out"] = held_out
            self._print_held_out(held_out)

        paths = save_curve(sweep, args.output, chosen, title=f"Early exit, {args.split}", record=record)
        if args.save_threshold and chosen is not None:
            from ..early_exit.config import EarlyExitConfig

            how = (
                {key: certification[key] for key in ("criterion", "epsilon", "delta", "method", "guarantee")}
                if certification is not None
                else {"method": "point estimate" if args.confidence is None else "bootstrap lower bound",
                      "target_relative_accuracy": args.target_accuracy or 0.99, "confidence": args.confidence}
            )
            config = EarlyExitConfig.load(args.model)
            config.entropy_threshold = chosen["threshold"]
            config.exit_temperatures = list(temperatures)  # the certified score is the entropy at these
            config.calibration = {"threshold": chosen["threshold"], "split": args.split,
                                  "num_examples": len(texts), **precision_record, **how}
            if certification is not None:
                config.calibration.update(temperatures=list(temperatures), fit_rows=certification["fit_rows"],
                                          certifying_rows=sweep["num_examples"], seed=certification["seed"])
            config.save(args.model)
            print(f"Saved entropy_threshold={chosen['threshold']}, the exit temperatures and how they were calibrated to "
                  f"{args.model}/early_exit_config.json")
        print("Wrote " + ", ".join(str(path) for path in paths))

    def _texts(self, split, needs_labels):
        """`(texts, labels or None)` of `split` of --dataset, read before the model loads so a bad file fails fast."""
        from ..early_exit.data import load_texts

        args = self.args
        texts, labels = load_texts(args.dataset, split, args.text_column, args.label_column)
        if labels is None and needs_labels:
            raise ValueError(
                f"The {split!r} split of {args.dataset!r} has no {args.label_column!r} column: --criterion accuracy "
                "and --target-accuracy need labels (name them with --label-column), --criterion consistency does not."
            )
        return texts, labels

    def _layer_logits(self, model, tokenizer, texts, labels):
        """`(layer_logits, label ids or None)`: every layer's exit logits of `texts`, [layers, texts, labels]."""
        from ..early_exit.calibration import collect_layer_logits

        label_ids = None
        if labels is not None:
            label2id = model.config.label2id
            unknown = sorted(set(labels) - set(label2id))
            if unknown:
                raise ValueError(f"Labels {unknown[:5]} are not classes of the model ({sorted(label2id)[:10]}...).")
            label_ids = [label2id[label] for label in labels]
        layer_logits = collect_layer_logits(model, tokenizer, texts, self.args.batch_size, self.args.max_length)
        return layer_logits, label_ids

    @staticmethod
    def _sweep(layer_logits, temperatures, labels, thresholds):
        from ..early_exit.calibration import normalised_entropies, sweep_exits

        entropies = normalised_entropies(layer_logits, temperatures)
        return sweep_exits(layer_logits.argmax(axis=-1), entropies, labels, thresholds)

    @staticmethod
    def _print_sweep(sweep):
        if sweep["full_accuracy"] is not None:
            print(f"full-model accuracy {sweep['full_accuracy']:.4f}; layer accuracy "
                  + " ".join(f"{accuracy:.3f}" for accuracy in sweep["layer_accuracy"]))
        print("layer agreement with the full model " + " ".join(f"{share:.3f}" for share in sweep["layer_consistency"]))

    def _print_choice(self, chosen, certification):
        args = self.args
        if certification is not None:
            print(certification["guarantee"])
            if chosen["threshold"] == 0.0:
                print("Only threshold 0 (no early exit, certified by construction) is certified: more calibration "
                      "texts, or a larger --epsilon / --delta, certify more.")
                return
            print(f"threshold {chosen['threshold']:.3f} (p-value {chosen['p_value']:.3g} <= delta {args.delta:g}): "
                  f"consistency {chosen['consistency']:.4f} on calibration, mean exit layer "
                  f"{chosen['mean_exit_layer']:.2f}, layer speed-up {chosen['layer_speedup']:.2f}x")
            return
        target = args.target_accuracy or 0.99
        qualifier = f" with {args.confidence:.0%} confidence" if args.confidence else ""
        if chosen is None:
            print(f"No threshold keeps {target:.1%} of the full accuracy{qualifier}; keeping the current one.")
            return
        print(
            f"threshold {chosen['threshold']:.3f} (no finite-sample guarantee): accuracy {chosen['accuracy']:.4f} "
            f"({chosen['relative_accuracy']:.1%} of full"
            + (f", at least {chosen['relative_accuracy_lower_bound']:.1%}{qualifier}" if args.confidence else "")
            + f"), mean exit layer {chosen['mean_exit_layer']:.2f}, layer speed-up {chosen['layer_speedup']:.2f}x"
        )

    @staticmethod
    def _print_held_out(held_out):
        line = (f"held-out {held_out['split']!r} ({held_out['num_rows']} texts) at threshold {held_out['threshold']:.3f}: "
                f"consistency {held_out['realised_consistency']:.4f}")
        if "promised_consistency" in held_out:
            line += f" (promised >= {held_out['promised_consistency']:.4f})"
        if held_out["realised_accuracy_relative_to_full"] is not None:
            line += f", accuracy {held_out['realised_accuracy_relative_to_full']:.2%} of full"
        if "promised_accuracy_drop_at_most" in held_out and held_out["realised_accuracy_drop"] is not None:
            line += (f" (drop {held_out['realised_accuracy_drop']:.4f}, promised <= "
                     f"{held_out['promised_accuracy_drop_at_most']:.4f})")
        if "risk_p_value" in held_out:
            line += (f"; promise {'met' if held_out['promise_met'] else 'not met'} on this set "
                     f"(p-value of its count under the promise {held_out['risk_p_value']:.3g})")
        print(line + f", layer speed-up {held_out['layer_speedup']:.2f}x")
