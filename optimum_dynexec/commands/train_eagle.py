"""`optimum-cli dynexec train-eagle`: generate a target's features on a text corpus and train an EAGLE head."""

from optimum.commands.base import CommandInfo

from .base import PluginCommand


class TrainEagleCommand(PluginCommand):
    COMMAND = CommandInfo(
        name="train-eagle",
        help="Train an EAGLE draft head (one decoder layer on the target's features) for a causal LM.",
    )

    @staticmethod
    def parse_args(parser):
        parser.add_argument("--model", required=True, help="The target: a transformers causal LM folder or hub id.")
        parser.add_argument(
            "--dataset",
            required=True,
            help="Training text: a .txt file (documents separated by form feeds), a .json/.jsonl file with a text "
            "column, a folder of .txt/.py/.md files (e.g. this Python's standard library, "
            "`python -c 'import sysconfig; print(sysconfig.get_paths()[\"stdlib\"])'`) or a `datasets` name.",
        )
        parser.add_argument("--output", required=True, help="Folder to write the head to (config.json + weights).")
        parser.add_argument("--text-column", default="text",
                            help="Column of a .json/.jsonl or `datasets` dataset holding the text "
                            "(default %(default)s).")
        parser.add_argument("--split", default="train", help="`datasets` split (default: train).")
        parser.add_argument("--sequence-length", type=int, default=512,
                            help="Tokens per training window (default %(default)s).")
        parser.add_argument("--max-windows", type=int, default=2000,
                            help="At most this many windows of text are encoded by the target (0: all; default "
                            "%(default)s).")
        parser.add_argument("--epochs", type=float, default=2.0, help="Passes over the windows (default %(default)s).")
        parser.add_argument("--batch-size", type=int, default=8, help="Windows per step (default %(default)s).")
        parser.add_argument("--learning-rate", type=float, default=1e-3,
                            help="AdamW learning rate (default %(default)s).")
        parser.add_argument("--feature-weight", type=float, default=1.0,
                            help="Weight of the feature regression (default %(default)s).")
        parser.add_argument("--token-weight", type=float, default=0.1,
                            help="Weight of the token cross-entropy (default %(default)s).")
        parser.add_argument("--feature-noise", type=float, default=0.2,
                            help="Uniform noise added to the target's features in training, as in EAGLE (default "
                            "%(default)s).")
        parser.add_argument(
            "--generated-tokens", type=int, default=0,
            help="Self-distillation: replace the last N tokens of every window by the target's own greedy "
            "continuation of the rest, so the head learns what the target writes (default 0: corpus text only).",
        )
        parser.add_argument(
            "--draft-steps", type=int, default=1,
            help="Also train the head on its own predicted features, unrolled this many drafting steps (EAGLE-3's "
            "training-time test; default 1: the EAGLE paper's teacher-forced training). Each step costs about one "
            "more pass.",
        )
        parser.add_argument(
            "--eagle3", action="store_true",
            help="Train an EAGLE-3 head (three target layers fused, a reduced draft vocabulary) in the layout "
            "openvino-genai and OpenVINO Model Server serve, instead of an EAGLE-1/2 head.",
        )
        parser.add_argument("--draft-vocab-size", type=int, default=8192,
                            help="EAGLE-3: draft over the target's this-many most frequent next tokens in the training "
                            "data (default: %(default)s).")
        parser.add_argument("--feature-layers", type=int, nargs=3, default=None, metavar=("LOW", "MIDDLE", "HIGH"),
                            help="EAGLE-3: the target decoder layers (0-based) whose outputs the head reads (default: 2, "
                            "n/2 and n-3 of the target's n layers, openvino-genai's default too).")
        parser.add_argument("--chat-prompts", default=None,
                            help="Also train on the target's own answers to these chat prompts (a .txt file, one "
                            "prompt per line, or a .jsonl file with a `prompt` field), generated greedily through its "
                            "chat template by the target exported to OpenVINO.")
        parser.add_argument("--answer-tokens", type=int, default=256,
                            help="At most this many tokens per answer to a chat prompt (default: %(default)s).")
        parser.add_argument("--checkpoint-steps", type=int, default=100,
                            help="Save a resumable checkpoint every this many steps (default %(default)s).")
        parser.add_argument("--no-bf16", action="store_true", help="Train and encode in float32 (slower on CPUs).")
        parser.add_argument("--seed", type=int, default=0, help="Training seed (default %(default)s).")
        parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")

    def run(self):
        import torch

        from ..speculative.eagle.training import (EagleTrainingArguments, load_chat_prompts, load_training_texts,
                                                  train_eagle_head)

        args = self.args
        if args.threads:
            torch.set_num_threads(args.threads)
        texts = load_training_texts(args.dataset, args.split, args.text_column)
        chat_prompts = load_chat_prompts(args.chat_prompts) if args.chat_prompts else ()
        arguments = EagleTrainingArguments(
            sequence_length=args.sequence_length,
            max_windows=args.max_windows or None,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            feature_weight=args.feature_weight,
            token_weight=args.token_weight,
            feature_noise=args.feature_noise,
            checkpoint_steps=args.checkpoint_steps,
            generated_tokens=args.generated_tokens,
            draft_steps=args.draft_steps,
            eagle3=args.eagle3,
            draft_vocab_size=args.draft_vocab_size,
            feature_layers=tuple(args.feature_layers) if args.feature_layers else None,
            answer_tokens=args.answer_tokens,
            bf16_autocast=not args.no_bf16,
            seed=args.seed,
        )
        answer_model = None
        if chat_prompts:  # answered by the target exported to OpenVINO: several times faster than torch on a CPU
            from optimum.intel import OVModelForCausalLM

            answer_model = OVModelForCausalLM.from_pretrained(args.model, export=True)
        summary = train_eagle_head(args.model, texts, args.output, arguments, chat_prompts=chat_prompts,
                                   answer_model=answer_model)
        print(
            f"Saved the EAGLE head to {args.output}: {summary['steps']} steps, held-out top-1 agreement with the "
            f"target {summary['validation_top1_agreement']:.3f} (drafting steps 1-4: "
            f"{', '.join(f'{value:.3f}' for value in summary['validation_agreement_per_draft_step'])}). Use it with "
            f"OVSpeculativeModelForCausalLM.from_pretrained({args.model!r}, export=True, eagle_head={args.output!r})."
        )
