"""`optimum-cli dynexec calibrate-exits`: certify an early-exit entropy threshold on calibration texts, plot the curve."""

from optimum.commands.base import CommandInfo

from .base import PluginCommand

# early_exit.calibration's CRITERIA and DEFAULT_FIT_SHARE, repeated: parse_args must stay import-light.
CRITERIA = ("consistency", "accuracy")
DEFAULT_FIT_SHARE = 0.5
# Texts of --fit-split that fit the temperatures: a handful of scalars, so a sample does.
FIT_TEXTS = 2000
DEFAULT_FIT_SPLIT = "train"


class CalibrateExitsCommand(PluginCommand):
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
            "--fit-split",
            default=None,
            help="Split of --dataset whose texts (a seeded sample of at most "
            f"{FIT_TEXTS}) fit the exits' temperatures, to predict the full model's answer (no labels needed), so that "
            "every calibration text certifies. The exits' own training texts serve: the temperatures only have to be "
            "fixed before the certifying texts are seen. Must differ from --split and --test-split. "
            f"Default: {DEFAULT_FIT_SPLIT} when --dataset has it, else {DEFAULT_FIT_SHARE} of the calibration texts "
            "fit them and the others certify.",
        )
        parser.add_argument(
            "--fit-share",
            type=float,
            default=None,
            help="Fit the temperatures on this share of the calibration texts instead of --fit-split, and certify on "
            "the others (the two parts must be disjoint for the guarantee). Default: %(default)s (--fit-split; "
            f"{DEFAULT_FIT_SHARE} when --dataset has no such split).",
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
            collect_layer_logits,
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
        if args.fit_share is not None and not 0.0 < args.fit_share < 1.0:
            raise ValueError(f"--fit-share is a share of the calibration texts strictly between 0 and 1 such as 0.5, "
                             f"got {args.fit_share}.")
        legacy = args.target_accuracy is not None or args.confidence is not None
        texts, labels = self._texts(args.split, needs_labels=legacy or args.criterion == "accuracy")
        test_texts, test_labels = self._texts(args.test_split, needs_labels=False) if args.test_split else (None, None)
        fit_split, fit_texts = (None, None) if legacy else self._fit_texts()
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
            fit_logits = None
            if fit_texts is not None:
                fit_logits = collect_layer_logits(model, tokenizer, fit_texts, args.batch_size, args.max_length)
            certification = certify_exits(layer_logits, labels, args.epsilon, args.delta, args.criterion,
                                          args.fit_share or DEFAULT_FIT_SHARE, fit_logits=fit_logits)
            certification["fit_split"] = fit_split or args.split
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
            where = (f"{certification['fit_rows']} texts of {fit_split!r}" if fit_texts is not None
                     else f"{certification['fit_rows']} of them")
            certified_on = (f"all {sweep['num_examples']}" if fit_texts is not None
                            else f"the other {sweep['num_examples']}")
            print(f"exit temperatures fitted on {where} to predict the full model's answer: "
                  + " ".join(f"{value:.3f}" for value in temperatures[:-1])
                  + f"; the threshold certified on {certified_on}")
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
                                          fit_split=certification["fit_split"],
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

    def _fit_texts(self):
        """`(split, up to FIT_TEXTS of its texts, a seeded sample)` to fit the temperatures on, or `(None, None)` when
        the calibration texts are to be split instead (--fit-share, or --dataset has no --fit-split)."""
        import random

        from ..early_exit.data import has_split

        args = self.args
        if args.fit_share is not None:
            if args.fit_split is not None:
                raise ValueError("--fit-split and --fit-share are two ways to pick the texts that fit the temperatures: "
                                 "pass one of them.")
            return None, None
        fit_split = args.fit_split or DEFAULT_FIT_SPLIT
        if args.fit_split is None and fit_split in (args.split, args.test_split):
            print(f"--split or --test-split is {fit_split!r}: {DEFAULT_FIT_SHARE} of the calibration texts fit the "
                  "exits' temperatures and the others certify.")
            return None, None
        if fit_split in (args.split, args.test_split):
            which = "--split" if fit_split == args.split else "--test-split"
            raise ValueError(f"--fit-split {fit_split!r} is also {which}: the temperatures must be fitted on other "
                             "texts than those that certify (or check) the threshold. Name another split with "
                             "--fit-split, or pass --fit-share to split the calibration texts.")
        if not has_split(args.dataset, fit_split):
            if args.fit_split is not None:
                raise ValueError(f"--fit-split {fit_split!r}: {args.dataset} has no such split. Name one it has, or "
                                 "pass --fit-share to split the calibration texts.")
            print(f"{args.dataset} has no {fit_split!r} split: {DEFAULT_FIT_SHARE} of the calibration texts fit "
                  "the exits' temperatures and the others certify.")
            return None, None
        texts, _ = self._texts(fit_split, needs_labels=False)
        return fit_split, random.Random(0).sample(texts, FIT_TEXTS) if len(texts) > FIT_TEXTS else texts

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
                from ..early_exit.calibration import minimum_certifying_rows

                rows, needed = certification["num_examples"], minimum_certifying_rows(args.epsilon, args.delta)
                print(f"Only threshold 0 (no early exit, certified by construction) is certified. On {rows} certifying "
                      f"texts, at --epsilon {args.epsilon:g} and --delta {args.delta:g}, a threshold needs at least "
                      f"{needed} of them even with no risky row, and early exits bring some: give more calibration "
                      "texts (for consistency unlabelled ones do), or a larger --epsilon / --delta.")
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
