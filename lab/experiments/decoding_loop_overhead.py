"""The decoding loop's own cost per verification, without a model: a fake target whose logits cost (almost) nothing,
prompt lookup drafting a text the target repeats (lab script).

    PYTHONPATH=<checkout> python lab/experiments/decoding_loop_overhead.py    # any checkout: old loop or new

Prints microseconds per target call, the fake target's work included; the same number of calls and the same tokens
(checksum) on every checkout whose loop is exact.
"""
import statistics
import time

import numpy as np

from optimum_dynexec.speculative.drafters import DraftLength, PromptLookupDrafter
from optimum_dynexec.speculative import decoding

VOCAB = 49152
text = np.random.default_rng(0).integers(3, 1000, size=40)
truth = np.concatenate([text, np.tile(text, 50)])  # the target repeats its prompt: lookup drafts it

class FakeSession:
    def __init__(self):
        self.length = 0
        self.logits = np.zeros((16, VOCAB), np.float32)
    def start(self, prompt):
        self.length = 0; return 0
    def append(self, tokens, last_logits_only=False):
        self.length += len(tokens)
        rows = 1 if last_logits_only else len(tokens)
        first = self.length - rows
        out = self.logits[:rows]
        out[:] = 0
        # every position predicts the true next token, except a miss every 7th position
        for r in range(rows):
            pos = first + r + 1
            out[r, truth[pos] if pos % 7 else 2] = 1.0
        return out
    def rollback(self, length):
        self.length = length

session = FakeSession()
prompt = truth[:40]
new = hasattr(decoding, "Target")
def run():
    drafter = PromptLookupDrafter(DraftLength(5, 5, "constant"), 3)
    target = session
    if new:
        from optimum_dynexec.speculative.targets import SequenceTarget
        target = SequenceTarget(session)
    stats = decoding.DecodingStats()
    out = decoding.speculative_decode(target, drafter, prompt, 600, stats=stats)
    return out, stats
out, stats = run()
times = []
for _ in range(7):
    t = time.perf_counter(); out, stats = run(); times.append(time.perf_counter() - t)
steps = stats.target_calls
print(f"{'new' if new else 'old'}: {len(out)} tokens, {steps} target calls, {statistics.median(times) / steps * 1e6:.1f} us per call (incl. fake target), checksum {int(out.sum())}")
