"""A draft cut from the target itself: its embedding, first layers, final norm and lm_head, then self-distilled.

    python -m lab.experiments.truncated_target_draft --layers 2 --output drafts/target-2-layers

The fixture's draft is a separate 256-wide model distilled from the target. This one starts as the target's own
first `--layers` layers at the target's width (a layer-skipping draft, as in LayerSkip / Draft & Verify), so its
features and vocabulary projection start aligned with the target's, and is then trained exactly like the fixture's
self-distillation stage (the same recipe, continuations, loss and held-out agreement measure), so the two drafts'
summaries compare directly. Writes `<output>/draft` and `<output>/self_distillation.json`. Time it against the
fixture's draft with `lab/experiments/eagle_benchmark.py --draft <fixture draft>,<output>/draft`.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="Target layers the draft keeps (the first ones).")
    parser.add_argument("--windows", type=int, default=None, help="Self-distillation windows (default: the stage's).")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab.fixtures.causal_lm import (
        DRAFT_SELF_DISTILLATION,
        RECIPES,
        build_causal_lm_fixture,
        self_distil_draft_into,
    )

    fixture = build_causal_lm_fixture("benchmark")
    output = Path(args.output)
    start = output / "truncated-target"
    target = AutoModelForCausalLM.from_pretrained(fixture.target_dir, dtype=torch.float32)
    if not 1 <= args.layers < target.config.num_hidden_layers:
        raise ValueError(f"`--layers` must be between 1 and {target.config.num_hidden_layers - 1}.")
    target.model.layers = target.model.layers[: args.layers]
    target.config.num_hidden_layers = args.layers
    if getattr(target.config, "layer_types", None):
        target.config.layer_types = target.config.layer_types[: args.layers]
    target.save_pretrained(start)
    AutoTokenizer.from_pretrained(fixture.tokenizer_dir).save_pretrained(start)

    stage = DRAFT_SELF_DISTILLATION["benchmark"]
    if args.windows:
        stage = dataclasses.replace(stage, windows=args.windows)
    # The stage trains whatever `draft_dir` holds: here, the truncated target instead of the corpus-distilled draft.
    # Training changes the weights, not their count: the truncated target's count is the trained draft's.
    notes = {"draft": f"the target's first {args.layers} layers",
             "parameters": sum(parameter.numel() for parameter in target.parameters())}
    summary = self_distil_draft_into(output, dataclasses.replace(fixture, draft_dir=start), RECIPES["benchmark"],
                                     stage, progress=True, notes=notes)
    print(json.dumps({key: summary[key] for key in ("agreement_on_target_text_before", "agreement_on_target_text_after",
                                                    "draft_loss", "greedy_agreement", "parameters", "seconds")}))


if __name__ == "__main__":
    main()
