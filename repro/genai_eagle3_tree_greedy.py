"""Reproduce: openvino-genai's EAGLE-3 *tree* mode leaves greedy decoding, where its chain mode does not.

Builds a small Llama target (4 layers, a byte-level BPE tokenizer trained on a few standard-library files), trains an
EAGLE-3 head for it with this package (a minute), exports both with `optimum-cli export dynexec --eagle-head` (the
target as optimum-intel writes it, the head as the draft IR genai's EAGLE-3 mode loads), then decodes greedily, all
at f32, with `openvino_genai.LLMPipeline` plain, with the head as a chain (`num_assistant_tokens`) and as a tree
(`branching_factor` > 1), and with torch. Prints, for each setting, whether the output equals plain decoding and,
at the first difference, the target's top logits there (torch).

    python repro/genai_eagle3_tree_greedy.py [--workdir DIR]

Seen with openvino-genai 2026.4.1 on CPU: chain mode equals plain decoding; tree mode picks the second-best token
where the two best logits are within ~0.1, i.e. its verification does not score the tree as plain decoding would.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="genai-eagle3-tree-"))
    work.mkdir(parents=True, exist_ok=True)

    import numpy as np
    import openvino as ov
    import openvino_genai
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lab.fixtures import corpus
    from lab.fixtures.causal_lm import train_tokenizer
    from optimum_dynexec.speculative.eagle.training import EagleTrainingArguments, train_eagle_head

    texts = [source.text for source in corpus.list_source_files()[:30]]
    tokenizer = train_tokenizer(texts, 300, 512, progress=False)
    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(work / "target")
    tokenizer.save_pretrained(work / "target")
    arguments = EagleTrainingArguments(sequence_length=64, max_windows=200, epochs=4, batch_size=8, learning_rate=3e-3,
                                       draft_steps=2, eagle3=True, draft_vocab_size=128, feature_layers=(0, 2, 3),
                                       bf16_autocast=False)
    train_eagle_head(work / "target", texts, work / "head", arguments, progress=False)
    subprocess.run([sys.executable, "-m", "optimum.commands.optimum_cli", "export", "dynexec", "--model",
                    str(work / "target"), "--eagle-head", str(work / "head"), str(work / "out")], check=True,
                   capture_output=True)

    exact = {"INFERENCE_PRECISION_HINT": "f32"}
    plain = openvino_genai.LLMPipeline(str(work / "out"), "CPU", **exact)
    served = openvino_genai.LLMPipeline(str(work / "out"), "CPU", **exact, draft_model=openvino_genai.draft_model(
        str(work / "out" / "eagle"), "CPU", **exact))
    prompt = tokenizer(texts[3][:400], add_special_tokens=False)["input_ids"][:40]

    def generate(pipeline, **settings):
        generation = pipeline.get_generation_config()
        generation.max_new_tokens, generation.do_sample, generation.ignore_eos = 40, False, True
        for name, value in settings.items():
            setattr(generation, name, value)
        return list(pipeline.generate(ov.Tensor(np.array([prompt], dtype=np.int64)), generation).tokens[0])

    expected = generate(plain)
    with torch.no_grad():
        logits = model.eval()(torch.tensor([prompt + expected])).logits[0]
    print(f"openvino-genai {openvino_genai.__version__}; plain genai == torch greedy: "
          f"{logits[len(prompt) - 1 : -1].argmax(-1).tolist() == expected}")
    for settings in (dict(num_assistant_tokens=4), dict(num_assistant_tokens=6, branching_factor=2, tree_depth=3),
                     dict(num_assistant_tokens=8, branching_factor=3, tree_depth=4)):
        tokens = generate(served, **settings)
        first = next((i for i, (a, b) in enumerate(zip(tokens, expected)) if a != b), None)
        line = f"{settings}: equals plain: {tokens == expected}"
        if first is not None:
            with torch.no_grad():
                top = model(torch.tensor([prompt + tokens[:first]])).logits[0, -1].topk(3)
            line += (f"; first difference at new token {first}: genai chose {tokens[first]}, plain {expected[first]}, "
                     f"torch's top-3 there {top.indices.tolist()} with logits {[round(v, 4) for v in top.values.tolist()]}")
        print(line)


if __name__ == "__main__":
    main()
