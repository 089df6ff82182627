"""Classify texts with an early-exit OpenVINO model and show where each one left.

    python examples/early_exit_classify.py <exported folder> "Python 3 bindings for libfoo" "GNU C library: shared libraries"

The folder comes from `export_early_exit(<train-exits checkpoint>, <folder>)`; see docs/early_exit.md.
"""

import sys

from transformers import AutoTokenizer

from optimum_dynexec.early_exit import OVEarlyExitModelForSequenceClassification


def main(folder: str, texts):
    model = OVEarlyExitModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(list(texts), padding=True, return_tensors="np")
    for threshold in (0.0, model.entropy_threshold or 0.4):
        output = model(**batch, entropy_threshold=threshold, output_exit_layers=True)
        print(f"entropy_threshold={threshold}")
        for text, logits, layer in zip(texts, output.logits, output.exit_layers):
            label = model.config.id2label[int(logits.argmax())]
            print(f"  layer {layer}/{model.num_layers}  {label:<10} {text}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
