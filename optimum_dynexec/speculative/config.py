"""The speculative model's defaults and precision rules, in one place: what `OVSpeculativeModelForCausalLM` does where
the caller says nothing, and which generation settings only plain decoding honours.
"""

from typing import Optional

DYNEXEC_CONFIG_NAME = "dynexec_config.json"
DRAFT_SUBFOLDER = "draft"

# The target verifies at the precision plain `OVModelForCausalLM` runs at on the device (bf16 where the CPU has it):
# that is the model the user runs today, and what speculation must be faster than. There every emitted token is the
# target's own greedy choice in the call that verified it; a token verified in a batch of k gets logits that differ
# from those computed alone by bf16's rounding, so output can differ from plain decoding where two tokens are nearly
# tied (docs/speculative.md, "Exactness"). In f32 they agree to f32's rounding: `ov_config=EXACT_PRECISION_CONFIG`
# makes greedy output token-identical to plain f32 decoding.
EXACT_PRECISION_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}


def target_ov_config(user_ov_config: Optional[dict]) -> dict:
    """OpenVINO properties of the target that verifies: the caller's `ov_config`, nothing added (the device's default
    precision, as plain `OVModelForCausalLM` uses it)."""
    return dict(user_ov_config or {})


def drafter_ov_config(user_ov_config: Optional[dict], drafter_config: Optional[dict] = None) -> dict:
    """OpenVINO properties of a drafter (a draft model, an EAGLE head): the caller's `ov_config` without its precision
    settings, then the drafter's own. A drafter only proposes, so its precision cannot change the output, and an f32 draft (inherited from an
    `ov_config` asking f32 for exactness) measured slower than the same draft at the CPU's default bf16
    (lab/experiments/draft_settings.py; docs/lab-notebook.md)."""
    inherited = {key: value for key, value in (user_ov_config or {}).items() if key not in EXACT_PRECISION_CONFIG}
    return {**inherited, **(drafter_config or {})}


# The EAGLE head's weights unless the caller asks otherwise: it only proposes, so precision cannot change the output,
# and its weights (lm_head included) are streamed from memory at every drafted token.
EAGLE_HEAD_DEFAULT_COMPRESSION = {"bits": 8, "sym": True}

def eagle_head_compression(eagle_quantization_config=None, quantization_config=None, load_in_8bit: bool = False):
    """The weight compression an EAGLE head is exported with: `eagle_quantization_config` if given (`False` keeps full
    precision), else the target's (`quantization_config`, `load_in_8bit`), else `EAGLE_HEAD_DEFAULT_COMPRESSION`. An
    `OVWeightQuantizationConfig` or `False`; a TypeError naming the argument for what is not weight-only compression."""
    from ..weight_compression import weight_compression_config

    config, argument = eagle_quantization_config, "eagle_quantization_config"
    if config is None:
        config, argument = quantization_config, "quantization_config"
    if config is None and load_in_8bit:
        config = {"bits": 8}
    if config is None:
        config = EAGLE_HEAD_DEFAULT_COMPRESSION
    return config if config is False else weight_compression_config(config, argument)


# Defaults where the caller leaves assisted-generation settings unset. transformers' own defaults (20 tokens,
# constant) suit a GPU; on a CPU every rejected draft token costs target time, so start short and adapt. No
# confidence stop: with the benchmark fixture's self-distilled draft it cut tokens per verification more than it saved
# in draft calls (lab/experiments/draft_settings.py; docs/lab-notebook.md).
SPECULATIVE_DEFAULTS = {
    "num_assistant_tokens": 5,
    "num_assistant_tokens_schedule": "heuristic",
    "assistant_confidence_threshold": 0.0,
}
MAX_DRAFT_TOKENS = 16
# Prompt lookup drafts for free (no model call), so its defaults differ: a constant draft length (transformers' and
# openvino-genai's rule; the heuristic's drop to zero drafts made its rare probes miss the moment the output starts
# copying) and n-grams of up to 3 tokens. Measured on the real model: docs/benchmarks.md, "Speculative generation".
PROMPT_LOOKUP_DEFAULTS = {"num_assistant_tokens_schedule": "constant"}
PROMPT_LOOKUP_NGRAM_SIZE = 3
# The largest `num_assistant_tokens` / `prompt_lookup_num_tokens` accepted: a verification scores every drafted token,
# and on a CPU a draft far longer than the adapted length ever reaches only costs time.
MAX_REQUESTED_DRAFT_TOKENS = 128

# Generation settings the speculative loop does not implement, with the value that means "off".
PLAIN_ONLY_SETTINGS = {
    "num_beams": 1,
    "num_beam_groups": 1,
    "num_return_sequences": 1,
    "penalty_alpha": None,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "guidance_scale": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "min_p": None,
    "exponential_decay_length_penalty": None,
    "output_scores": False,
    "output_logits": False,
    "output_attentions": False,
    "output_hidden_states": False,
    "watermarking_config": None,
}
SPECULATION_ARGUMENTS = ("prompt_lookup_num_tokens", "max_matching_ngram_size", "assistant_model")
