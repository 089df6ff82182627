"""Fine-tune the fixture's draft model on its target's own greedy text (sequence-level self-distillation).

    python examples/self_distil_draft.py --output <folder> [--windows 2000] [--epochs 2]

The fixture's draft was distilled from the target on corpus text (KL to the target's distribution on the standard
library). At generation time it must predict what the target writes, which is not corpus text: the target repeats
itself and follows its own habits. This script continues the draft's training on windows whose second half is the
target's greedy continuation of the first (the same continuations `train-eagle --generated-tokens` uses), with the
fixture's loss (0.9 KL to the target + 0.1 cross-entropy), and reports the draft's greedy agreement with the target on
the target's continuations of held-out prompts (the benchmark's situation), before and after. The result is a normal
transformers folder: `examples/eagle_benchmark.py --draft <folder>` times it against the fixture's draft.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--size", default="benchmark")
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--prefix-tokens", type=int, default=128)
    parser.add_argument("--generated-tokens", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--distillation-weight", type=float, default=0.9)
    parser.add_argument("--evaluation-prompts", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from optimum_dynexec.fixtures import corpus
    from optimum_dynexec.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts
    from optimum_dynexec.speculative.eagle_training import cosine_learning_rate, greedy_continuation

    started = time.time()
    fixture = build_causal_lm_fixture(args.size)
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    target = AutoModelForCausalLM.from_pretrained(fixture.target_dir, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(fixture.draft_dir, dtype=torch.float32)
    for parameter in target.parameters():
        parameter.requires_grad_(False)

    # Held-out situation: the target's greedy continuation of held-out completion prompts.
    evaluation = []
    with torch.no_grad():
        for text in evaluation_prompts(fixture, "completion", args.evaluation_prompts, seed=1):
            prompt = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
            evaluation.append((prompt.shape[1], greedy_continuation(target, prompt, 96)))

    @torch.no_grad()
    def agreement(model):
        model.eval()
        agreed = total = 0
        for prompt_length, sequence in evaluation:
            target_choice = sequence[0, prompt_length:]
            draft_choice = model(input_ids=sequence).logits[0, prompt_length - 1 : -1].argmax(-1)
            agreed += (draft_choice == target_choice).sum().item()
            total += len(target_choice)
        return agreed / total

    before = agreement(draft)
    print(f"draft/target greedy agreement on the target's continuations of held-out prompts: {before:.3f}")

    # Training windows: corpus prefixes from the training files, continued by the target.
    training_files, _ = corpus.split_source_files(corpus.list_source_files())
    rng = np.random.default_rng(args.seed)
    stream = np.concatenate([np.asarray(tokenizer.encode(training_files[i].text, add_special_tokens=False) +
                                        [tokenizer.eos_token_id], dtype=np.int64)
                             for i in rng.permutation(len(training_files))[:600]])
    starts = rng.integers(0, len(stream) - args.prefix_tokens, args.windows)
    prefixes = torch.from_numpy(np.stack([stream[s : s + args.prefix_tokens] for s in starts]))
    windows = []
    with torch.no_grad():
        for chunk in tqdm(torch.split(prefixes, 64), desc="target continuations", unit="chunk"):
            windows.append(greedy_continuation(target, chunk, args.generated_tokens))
    windows = torch.cat(windows)

    draft.train()
    optimizer = torch.optim.AdamW(draft.parameters(), lr=args.learning_rate, betas=(0.9, 0.95), weight_decay=0.1)
    steps = int(args.epochs * len(windows) / args.batch_size)
    bar = tqdm(range(steps), desc="self-distilling the draft", unit="step")
    for step in bar:
        for group in optimizer.param_groups:  # warm-up over 5% of the steps
            group["lr"] = cosine_learning_rate(step, steps, args.learning_rate, max(1, steps // 20))
        batch = windows[rng.integers(0, len(windows), args.batch_size)]
        inputs, labels = batch[:, :-1], batch[:, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = draft(input_ids=inputs).logits.float()
            with torch.no_grad():
                teacher = target(input_ids=inputs).logits.float()
        kl = F.kl_div(F.log_softmax(logits, -1).flatten(0, 1), F.log_softmax(teacher, -1).flatten(0, 1),
                      log_target=True, reduction="batchmean")
        cross_entropy = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss = args.distillation_weight * kl + (1 - args.distillation_weight) * cross_entropy
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        optimizer.step()
        if step % 20 == 0:
            bar.set_postfix(kl=f"{kl.item():.3f}")
    after = agreement(draft)
    print(f"after self-distillation: {after:.3f}")

    output = Path(args.output)
    draft.save_pretrained(output)
    tokenizer.save_pretrained(output)
    summary = {"fixture": str(fixture.path), "agreement_before": round(before, 4), "agreement_after": round(after, 4),
               "steps": steps, "seconds": round(time.time() - started, 1), "arguments": vars(args)}
    (output / "self_distillation.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
