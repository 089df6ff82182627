"""Fixtures for every test folder: the session's tiny causal LMs.

Builders and loaders are plain functions in tests/helpers/ (importable as `helpers.*`: pytest.ini puts tests/ on
`sys.path`); this file only turns them into pytest fixtures. Fixtures of one capability live in its folder's
conftest.py.
"""

import gc
import os

import pytest

# The helpers hold assertions of their own (an export's `stateful`, a vocabulary's order, a head's tensors): rewrite
# them as pytest rewrites test modules, so that a failing one explains itself. Must run before `helpers` is imported.
pytest.register_assert_rewrite("helpers")

from helpers.tiny_causal_lm import TinyModels  # noqa: E402

from lab.fixtures.cache import fixture_cache_dir  # noqa: E402

# Exports and pytest call `gc.collect()`, which would walk the hundreds of thousands of long-lived objects that
# importing transformers and optimum creates, for seconds each time: move those out of the collector's way.
gc.collect()
gc.freeze()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """The tiny causal LMs of `helpers.tiny_causal_lm.MODEL_BUILDERS`: checkpoints and exported IRs, built on demand."""
    use_cache = os.environ.get("OPTIMUM_DYNEXEC_TEST_EXPORT_CACHE", "1") != "0"
    return TinyModels(
        tmp_path_factory.mktemp("tiny_models"), fixture_cache_dir() / "test-models" if use_cache else None
    )
