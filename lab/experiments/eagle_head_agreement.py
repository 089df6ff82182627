"""Held-out agreement of EAGLE heads with the benchmark fixture's target, at each drafting step of a chain.

    python -m lab.experiments.eagle_head_agreement <head dir> [<head dir> ...] [--windows 48] [--steps 6]

Windows of 256 tokens from the standard-library files the fixture never trained on, whose last 128 tokens are
replaced by the target's own greedy continuation (as `train-eagle --generated-tokens 128` builds its training
windows). Step 1 is the head reading the target's exact features (the figure `train-eagle` has always reported);
step s > 1 is the head drafting on the features it predicted itself (`eagle.training.drafted_features`), which is
what every drafted token after the first does. Deterministic: no timing involved.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("heads", nargs="+", help="EAGLE head folders (published format) trained for the fixture.")
    parser.add_argument("--size", default="benchmark")
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab.fixtures import corpus
    from lab.fixtures.causal_lm import build_causal_lm_fixture
    from optimum_dynexec.speculative.eagle import load_eagle_head
    from optimum_dynexec.speculative.eagle.training import FeatureStore, draft_step_scores, generate_features, \
        token_windows

    fixture = build_causal_lm_fixture(args.size)
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    target = AutoModelForCausalLM.from_pretrained(fixture.target_dir, dtype=torch.float32).eval()
    _, held_out = corpus.split_source_files(corpus.list_source_files())
    windows = token_windows(tokenizer, [source.text for source in held_out], 257, args.windows, seed=0)
    with tempfile.TemporaryDirectory() as work:
        store = FeatureStore(Path(work), windows, target.config.hidden_size, generated_tokens=128)
        generate_features(target, store, 16, bf16_autocast=False, progress=True, generated_tokens=128)
        print(f"| head | {' | '.join(f'step {step}' for step in range(1, args.steps + 1))} |")
        print(f"|---|{'---|' * args.steps}")
        for head_dir in args.heads:
            head = load_eagle_head(head_dir, target).eval()
            scores = []
            with torch.no_grad():
                for start in range(0, len(windows), 8):
                    ids = np.arange(start, min(start + 8, len(windows)))
                    tokens = torch.from_numpy(np.asarray(store.tokens[ids]))
                    features = torch.from_numpy(np.asarray(store.features[ids], dtype=np.float32))
                    scores.append([accuracy.item() for _, _, accuracy in
                                   draft_step_scores(head, tokens, features, args.steps)])
            print(f"| {Path(head_dir).name} | {' | '.join(f'{value:.4f}' for value in np.mean(scores, axis=0))} |")


if __name__ == "__main__":
    main()
