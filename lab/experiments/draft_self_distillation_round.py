"""One more round of self-distillation for the benchmark fixture's draft: does training on the target's text keep paying?

    python -m lab.experiments.draft_self_distillation_round --seed 1 --windows 6000 --epochs 2 --learning-rate 5e-4 \
        --output drafts/self-distilled-round-2

The fixture's draft has had one round (stage 6: 4,000 windows of the target's greedy continuations, 3 epochs). This
runs the same stage again on the draft it produced, with windows from another seed (other training files, other
prefixes), and writes `<output>/draft` and `<output>/self_distillation.json` (held-out agreement on the target's
continuations before and after, as the stage reports it). Time it against the fixture's draft with
`lab/experiments/eagle_benchmark.py --draft <fixture draft>,<output>/draft`.
"""

import argparse
import dataclasses
import json
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="Window seed (the fixture's own round used 0).")
    parser.add_argument("--windows", type=int, default=None, help="Windows (default: the stage's).")
    parser.add_argument("--epochs", type=float, default=None, help="Epochs (default: the stage's).")
    parser.add_argument("--learning-rate", type=float, default=None, help="Learning rate (default: the stage's).")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    from lab.fixtures.causal_lm import (
        DRAFT_SELF_DISTILLATION,
        RECIPES,
        build_causal_lm_fixture,
        self_distil_draft_into,
    )

    fixture = build_causal_lm_fixture("benchmark")  # its draft is already the self-distilled one
    changes = {"seed": args.seed, "windows": args.windows, "epochs": args.epochs, "learning_rate": args.learning_rate}
    stage = dataclasses.replace(DRAFT_SELF_DISTILLATION["benchmark"],
                                **{name: value for name, value in changes.items() if value is not None})
    summary = self_distil_draft_into(Path(args.output), fixture, RECIPES["benchmark"], stage, progress=True,
                                     notes={"starting_draft": str(fixture.draft_dir)})
    print(json.dumps({key: summary[key] for key in ("agreement_on_target_text_before", "agreement_on_target_text_after",
                                                    "draft_loss", "greedy_agreement", "seconds")}))


if __name__ == "__main__":
    main()
