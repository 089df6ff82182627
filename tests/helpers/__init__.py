"""Builders shared by the tests: tiny models, tokenizers, files and checks, as plain functions and classes.

Nothing here is a test or a pytest fixture (fixtures live in the conftest.py files). pytest.ini puts tests/ on
`sys.path`, so test modules import these as `helpers.<module>`; the installed package never imports them.

  tiny_causal_lm        tiny causal LMs of many architectures, their cached OpenVINO export, loaders and prompts
  tiny_classifiers      tiny BERT-like classifiers, their tokenizer, a synthetic 3-class task, trained exits
  published_eagle_head  an EAGLE head written in the published checkpoint format, independently of the package
  tiny_gguf             tiny GGUF files written the way llama.cpp's converter writes them
  chi_square            the goodness-of-fit check of the sampling tests
  optimum_cli           optimum-cli run in a fresh interpreter with chosen packages made unimportable
"""
