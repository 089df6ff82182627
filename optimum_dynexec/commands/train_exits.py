"""`optimum-cli dynexec train-exits`: add an exit head after every layer of a classifier and train them."""

from optimum.commands.base import CommandInfo

from .base import PluginCommand


class TrainExitsCommand(PluginCommand):
    COMMAND = CommandInfo(
        name="train-exits", help="Train early-exit heads (one per layer) for a BERT/RoBERTa/ALBERT/DistilBERT/ELECTRA classifier."
    )

    @staticmethod
    def parse_args(parser):
        # Every option's help ends with its default ("Default: ..."), so `--help` alone tells what a run will do.
        parser.add_argument("--model", required=True, help="Fine-tuned classifier or base encoder (folder or hub id).")
        parser.add_argument(
            "--dataset",
            required=True,
            help="A .csv/.tsv/.json/.jsonl file, a folder with train.csv and validation.csv, or a `datasets` name.",
        )
        parser.add_argument(
            "--output", required=True,
            help="Folder to write the checkpoint with its exits to: a new or empty one, or one written here before.",
        )
        parser.add_argument("--text-column", default="text", help="Column of the texts. Default: %(default)s.")
        parser.add_argument("--label-column", default="label", help="Column of the labels. Default: %(default)s.")
        parser.add_argument("--train-split", default="train", help="Split to train on. Default: %(default)s.")
        parser.add_argument(
            "--validation-split", default=None,
            help="Split to validate on. Default: %(default)s (validation/dev if present, else 10%% of train held out).",
        )
        parser.add_argument("--scheme", choices=["joint", "two-stage"], default="joint",
                            help="joint: encoder and exits together; two-stage: fine-tune the classifier, then train "
                            "the exits. Default: %(default)s.")
        parser.add_argument("--pooling", choices=["mean", "cls"], default="mean",
                            help="How an exit head pools its layer's tokens. Default: %(default)s.")
        parser.add_argument("--epochs", type=float, default=3.0, help="Training epochs. Default: %(default)s.")
        parser.add_argument("--batch-size", type=int, default=32, help="Default: %(default)s.")
        parser.add_argument("--learning-rate", type=float, default=1e-4,
                            help="Learning rate of the model (encoder and classifier). Default: %(default)s.")
        parser.add_argument("--head-learning-rate", type=float, default=5e-4,
                            help="Learning rate of the exit heads. Default: %(default)s.")
        parser.add_argument("--layer-weighting", choices=["linear", "uniform"], default="uniform",
                            help="Weight of each exit's loss: growing with depth, or equal (equal gives the first "
                            "exits more of the training signal). Default: %(default)s.")
        parser.add_argument("--distillation-weight", type=float, default=0.9,
                            help="Weight of self-distillation from the final classifier; 0 turns it off. Default: "
                            "%(default)s.")
        parser.add_argument("--distillation-temperature", type=float, default=2.0,
                            help="Softmax temperature of self-distillation. Default: %(default)s.")
        parser.add_argument("--finetune-epochs", type=float, default=None,
                            help="two-stage only: epochs of stage 1. Default: %(default)s (0 when --model is a "
                            "classifier of the data's labels already, else --epochs).")
        parser.add_argument("--max-length", type=int, default=128, help="Truncate texts to N tokens. Default: %(default)s.")
        parser.add_argument("--no-temperature-calibration", action="store_true",
                            help="Do not fit each exit's softmax temperature on validation (fitted by default).")
        parser.add_argument(
            "--freeze-word-embeddings", action="store_true",
            help="Do not train the vocabulary matrix (faster on CPU; trained by default).",
        )
        parser.add_argument("--max-train-examples", type=int, default=None,
                            help="Train on the first N examples only. Default: %(default)s (all).")
        parser.add_argument("--seed", type=int, default=0, help="Default: %(default)s.")
        parser.add_argument("--threads", type=int, default=None,
                            help="torch threads. Default: %(default)s (torch's choice).")

    def run(self):
        import torch

        from ..early_exit.data import find_validation_split, hold_out, load_labelled_texts
        from ..early_exit.training import ExitTrainingArguments, train_exits

        args = self.args
        if args.threads:
            torch.set_num_threads(args.threads)
        texts, labels = load_labelled_texts(args.dataset, args.train_split, args.text_column, args.label_column)
        validation_split = args.validation_split or find_validation_split(args.dataset)
        if validation_split:
            validation = load_labelled_texts(args.dataset, validation_split, args.text_column, args.label_column)
        else:
            (texts, labels), validation = hold_out(texts, labels)
        if args.max_train_examples:
            texts, labels = texts[: args.max_train_examples], labels[: args.max_train_examples]
        arguments = ExitTrainingArguments(
            scheme=args.scheme,
            pooling=args.pooling,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            head_learning_rate=args.head_learning_rate,
            layer_weighting=args.layer_weighting,
            distillation_weight=args.distillation_weight,
            distillation_temperature=args.distillation_temperature,
            finetune_epochs=args.finetune_epochs,
            max_length=args.max_length,
            calibrate_temperatures=not args.no_temperature_calibration,
            freeze_word_embeddings=args.freeze_word_embeddings,
            seed=args.seed,
        )
        config = train_exits(args.model, texts, labels, validation[0], validation[1], args.output, arguments)
        accuracy = config.training["validation_accuracy_per_layer"]
        print(f"Saved to {args.output}; validation accuracy per layer: " + " ".join(f"{a:.3f}" for a in accuracy))
