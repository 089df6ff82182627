"""Train an EAGLE head for your causal LM on your own text, then generate with it.

    python examples/train_eagle_head.py <transformers checkpoint> <text file, .jsonl or folder> <output folder>

The command line does the same: `optimum-cli dynexec train-eagle --model <checkpoint> --dataset <data> --output <dir>`
(see docs/eagle.md for the recipe and what to expect on a CPU). Training is resumable: run it again to continue.
"""

import sys

from transformers import AutoTokenizer

from optimum_dynexec import OVSpeculativeModelForCausalLM
from optimum_dynexec.speculative.eagle.training import EagleTrainingArguments, load_training_texts, train_eagle_head


def main(checkpoint: str, dataset: str, output: str):
    texts = load_training_texts(dataset)
    summary = train_eagle_head(checkpoint, texts, output, EagleTrainingArguments(epochs=1))
    print("training summary (steps, losses, held-out agreement with the target):", summary)

    model = OVSpeculativeModelForCausalLM.from_pretrained(checkpoint, export=True, eagle_head=output)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    inputs = tokenizer(texts[0][:200], return_tensors="pt")
    output_ids = model.generate(**inputs, max_new_tokens=48, do_sample=False)
    print(tokenizer.decode(output_ids[0, inputs["input_ids"].shape[1]:]))
    print(model.last_decoding_stats)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
