"""Draft trees (EAGLE-2): masks, re-ranking, greedy and exact stochastic acceptance. Pure numpy, no models."""

import numpy as np
import pytest

from optimum_dynexec.speculative.acceptance import accept, greedy_tree_accept, sampling_tree_accept
from optimum_dynexec.speculative.tree import DraftTree, TreeCandidates, log_softmax


def _example_tree():
    #        root
    #       /    \
    #     0:a    1:b
    #    /   \     \
    #  2:c   3:d   4:e
    #   |
    #  5:f
    tokens = np.array([10, 11, 12, 13, 14, 15])
    parents = np.array([-1, -1, 0, 0, 1, 2])
    depths = np.array([1, 1, 2, 2, 2, 3])
    return DraftTree(tokens, parents, depths)


def test_visibility_is_ancestors_and_self():
    visible = _example_tree().visibility()
    expected_rows = {0: {0}, 1: {0, 1}, 2: {0, 2}, 3: {0, 1, 3}, 4: {0, 1, 4}, 5: {0, 2, 5}, 6: {0, 1, 3, 6}}
    for row, columns in expected_rows.items():
        assert set(np.flatnonzero(visible[row])) == columns


def test_chain_and_truncation_keep_parents_valid():
    chain = DraftTree.chain(np.array([5, 6, 7, 8]))
    assert chain.parents.tolist() == [-1, 0, 1, 2]
    assert np.array_equal(chain.visibility(), np.tril(np.ones((5, 5), dtype=bool)))
    truncated = _example_tree().truncated(2)
    assert truncated.tokens.tolist() == [10, 11, 12, 13, 14]
    assert truncated.parents.tolist() == [-1, -1, 0, 0, 1]
    assert len(_example_tree().truncated(0)) == 0


def test_candidates_select_best_nodes_as_a_tree():
    rng = np.random.default_rng(0)
    vocab, top_k = 50, 3
    candidates = TreeCandidates(4)
    children = candidates.add_children(np.array([-1]), np.zeros(1), log_softmax(rng.normal(size=(1, vocab)) * 3), top_k, 1)
    frontier = candidates.best(children, top_k)
    for depth in range(2, 6):
        log_probs = log_softmax(rng.normal(size=(len(frontier), vocab)) * 3)
        children = candidates.add_children(frontier, candidates.scores[frontier], log_probs, top_k, depth)
        frontier = candidates.best(children, top_k)
    total = 10
    tree = candidates.select(total)
    assert len(tree) == total
    # The kept nodes are the best-scoring ones...
    best_scores = np.sort(candidates.scores[: candidates.count])[::-1][:total]
    assert np.allclose(np.sort(tree.scores)[::-1], best_scores)
    for node in range(total):
        path, parent = [], node
        while parent >= 0:
            path.append(parent)
            parent = tree.parents[parent]
        assert len(path) == tree.depths[node]  # ...form a tree, parents first...
        assert all(tree.parents[n] < n for n in path)
        if tree.parents[node] >= 0:  # ...in which a child never scores above its parent.
            assert tree.scores[node] <= tree.scores[tree.parents[node]]
    assert tree.depths.tolist() == sorted(tree.depths.tolist())
    # Children of one parent are distinct tokens (top-k without repetition).
    for node in range(-1, total):
        child_tokens = tree.tokens[tree.children(node)]
        assert len(set(child_tokens.tolist())) == len(child_tokens)


def test_cannot_improve_once_frontier_is_worse_than_the_kept_set():
    candidates = TreeCandidates(8)
    ids = candidates.add_children(np.array([-1]), np.zeros(1), np.log(np.array([[0.6, 0.3, 0.1]])), 3, 1)
    assert candidates.cannot_improve(ids[2:], total_tokens=2)  # 0.1 cannot beat the kept 0.6 and 0.3
    assert not candidates.cannot_improve(ids[:1], total_tokens=2)
    assert not candidates.cannot_improve(ids[2:], total_tokens=4)  # fewer nodes than wanted: keep growing


def test_greedy_tree_accept_follows_the_target_argmax():
    tree = _example_tree()
    vocab = 20
    logits = np.zeros((len(tree) + 1, vocab))
    logits[0, 10] = 1  # root -> a (node 0)
    logits[1, 13] = 1  # a -> d (node 3, second child)
    logits[4, 7] = 1  # d -> 7 (no child)
    path, token = greedy_tree_accept(tree, logits)
    assert (path.tolist(), token) == ([0, 3], 7)
    logits[0, 10], logits[0, 3] = 0, 1  # root -> 3: not drafted
    path, token = greedy_tree_accept(tree, logits)
    assert (path.tolist(), token) == ([], 3)


def test_sampling_tree_accept_is_distributed_as_the_target():
    """Whatever the tree, the first two emitted tokens follow the target's joint distribution."""
    rng = np.random.default_rng(1)
    vocab = 4
    # Tree over a 4-token vocabulary: root children 0 and 2; node "0" has children 1 and 3.
    tree = DraftTree(np.array([0, 2, 1, 3]), np.array([-1, -1, 0, 0]), np.array([1, 1, 2, 2]))
    root_p = np.array([0.1, 0.2, 0.3, 0.4])
    after = {token: rng.dirichlet(np.ones(vocab)) for token in range(vocab)}
    # Rows: root, then each node; a node's row is the target's distribution after the path to it.
    target_probs = np.stack([root_p, after[0], after[2], after[1], after[3]])
    trials = 40000
    counts = np.zeros((vocab, vocab))
    for _ in range(trials):
        path, next_token = sampling_tree_accept(tree, target_probs, rng)
        emitted = [int(tree.tokens[n]) for n in path] + [next_token]
        if len(emitted) < 2:  # the second token would be drawn by the next verification: from the target
            emitted.append(int(rng.choice(vocab, p=after[emitted[0]])))
        counts[emitted[0], emitted[1]] += 1
    expected = root_p[:, None] * np.stack([after[t] for t in range(vocab)])
    observed = counts / trials
    assert np.abs(observed - expected).max() < 0.012
    # And drafts do get accepted (the test would be vacuous otherwise).
    accepted = sum(len(sampling_tree_accept(tree, target_probs, rng)[0]) > 0 for _ in range(2000))
    assert accepted > 600


def test_sampling_tree_accept_never_emits_a_zero_probability_token():
    rng = np.random.default_rng(2)
    tree = DraftTree.chain(np.array([1, 2]))
    target_probs = np.array([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    for _ in range(200):
        path, token = sampling_tree_accept(tree, target_probs, rng)
        assert path.tolist() == [] and token == 2


def test_a_chain_is_accepted_alike_as_a_chain_and_as_a_tree():
    """`accept` takes the vectorised chain rule for chains; the tree walk must agree with it on any target."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        tokens = rng.integers(0, 4, size=int(rng.integers(0, 6)))
        logits = rng.normal(size=(len(tokens) + 1, 4))
        chain = DraftTree.chain(tokens)
        as_tree = DraftTree(chain.tokens, chain.parents, chain.depths)  # the same nodes, not marked a chain
        chain_path, chain_token = accept(chain, logits, None, None)
        tree_path, tree_token = accept(as_tree, logits, None, None)
        assert (chain_path.tolist(), chain_token) == (tree_path.tolist(), tree_token)
        assert np.array_equal(chain.visibility(), as_tree.visibility())


@pytest.mark.parametrize("top_k", [1, 3])
def test_top_k_children_are_sorted_best_first(top_k):
    candidates = TreeCandidates(2)
    log_probs = np.log(np.array([[0.05, 0.5, 0.15, 0.3]]))
    ids = candidates.add_children(np.array([-1]), np.zeros(1), log_probs, top_k, 1)
    assert candidates.tokens[ids].tolist() == [1, 3, 2][:top_k]
