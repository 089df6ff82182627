"""The target side of speculation: score a proposal in one call, then keep the accepted path.

One interface over the sessions that hold the target's KV cache:

* `SequenceTarget` wraps a session that appends tokens in sequence and rolls back (`kv_cache.DecoderSession`,
  stateful or stateless, and `paged_session.PagedDecoderSession`): it scores chains, with the features EAGLE
  drafts from when the paged graph outputs them.
* `TreeTarget` wraps a `kv_cache.TreeDecoderSession` on the target rewritten with a tree mask and its hidden states
  as an output (`eagle.target_with_features`): it scores any tree, and gives the features EAGLE heads draft from.

Invariant: the target's cache holds every token of the sequence but the last one (the *root*: the target's own
latest choice), which `verify` feeds first, before the proposal.
"""

from typing import NamedTuple, Optional, Union

import numpy as np

from .kv_cache import TreeDecoderSession, sequence_inputs
from .paged_session import FEATURES_OUTPUT
from .tree import DraftTree


class TargetOutputs(NamedTuple):
    """What one target call computed, row by row (root first): `logits` `[rows, vocab]`, and the hidden states
    `features` `[rows, hidden]` where the graph outputs them (else `None`). Views of the call's output buffers, valid
    until the target's next call: copy what must live longer."""

    logits: np.ndarray
    features: Optional[np.ndarray] = None


class SequenceTarget:
    """A target whose session appends tokens one sequence at a time and rolls back (chain proposals only).

    On a paged graph with a feature output (`eagle.target_with_feature_output`) it also gives the features EAGLE
    heads draft from, so EAGLE chains are verified on the same session as the other drafters' chains."""

    def __init__(self, session):
        self.session = session
        self._features = getattr(session, "has_features", False)
        self._root = 0  # position of the root in the last verification

    def prefill(self, prompt: np.ndarray) -> TargetOutputs:
        """Start a sequence with `prompt`; logits of its last row (and the features of every prompt row). The session
        may keep a prefix it already holds, unless features are wanted: the drafter reads them for the whole prompt."""
        session = self.session
        if self._features:
            session.reset()
            return self._outputs(session.append(prompt, last_logits_only=True))
        held = session.start(prompt)
        return TargetOutputs(session.append(prompt[held:], last_logits_only=True))

    def verify(self, sequence: np.ndarray, proposal: DraftTree) -> TargetOutputs:
        """Score the root `sequence[-1]` and the chain `proposal` after it: `[1 + len(proposal), vocab]` logits."""
        if not proposal.is_chain:
            raise ValueError("This target verifies chains; draft trees need a `TreeTarget`.")
        self._root = len(sequence) - 1
        tokens = sequence[-1:] if not len(proposal) else np.concatenate([sequence[-1:], proposal.tokens])
        return self._outputs(self.session.append(tokens))

    def _outputs(self, logits: np.ndarray) -> TargetOutputs:
        return TargetOutputs(logits, self.session.features() if self._features else None)

    def keep(self, path: np.ndarray) -> None:
        """Keep the root and the accepted `path` of the last verification; forget the rest."""
        self.session.rollback(self._root + 1 + len(path))


class TreeTarget:
    """A target that scores draft trees in one call (each node sees its ancestors) and outputs its hidden states."""

    def __init__(self, session: TreeDecoderSession):
        self.session = session
        self._root = 0

    def prefill(self, prompt: np.ndarray) -> TargetOutputs:
        session = self.session
        session.reset()
        session.run(sequence_inputs(input_ids=prompt, position_ids=np.arange(len(prompt))), last_logits_only=True)
        return TargetOutputs(session.outputs("logits"), session.outputs(FEATURES_OUTPUT))

    def verify(self, sequence: np.ndarray, proposal: DraftTree) -> TargetOutputs:
        session = self.session
        self._root = root = len(sequence) - 1
        tokens = np.concatenate([sequence[-1:], proposal.tokens])
        visible = np.ones((len(tokens), session.length + len(tokens)), dtype=bool)
        visible[:, session.length :] = proposal.visibility()
        session.run(sequence_inputs(input_ids=tokens, position_ids=root + np.concatenate([[0], proposal.depths])), visible)
        return TargetOutputs(session.outputs("logits"), session.outputs(FEATURES_OUTPUT))

    def keep(self, path: np.ndarray) -> None:
        self.session.keep(self._root, np.concatenate([[0], path + 1]))


Target = Union[SequenceTarget, TreeTarget]
