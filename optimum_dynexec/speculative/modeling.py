"""`OVSpeculativeModelForCausalLM`: an `OVModelForCausalLM` whose `generate()` drafts and verifies.

It loads and saves like its parent (plus a `draft/` sub-folder) and takes the transformers arguments of
assisted generation (`assistant_model`, `num_assistant_tokens`, `num_assistant_tokens_schedule`,
`assistant_confidence_threshold`, `prompt_lookup_num_tokens`, `max_matching_ngram_size`). The loop itself lives in
`decoding.py`, one for every drafter; this file picks the target and drafter of a call, maps Hugging Face arguments
onto the loop and falls back to the parent's `generate()` for what
speculation does not cover (beam search, batches of several prompts, logits processors).
"""

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from optimum.intel import OVModelForCausalLM
from optimum.intel.openvino.modeling_decoder import OVBloomForCausalLM, OVGPTBigCodeForCausalLM, OVPhi3ForCausalLM
from transformers import GenerationConfig, StoppingCriteriaList
from transformers.generation.stopping_criteria import MaxTimeCriteria, StopStringCriteria
from transformers.generation.utils import GenerateDecoderOnlyOutput

from ..gguf import checkpoint_for_gguf, is_gguf
from ..openvino_cpu import prepare_to_compile
from ..utils.io import atomic_save_into, remove_abandoned_staging
from ..utils.model_files import looks_like_local_path, openvino_error_reason
from .config import (
    DRAFT_SUBFOLDER,
    DYNEXEC_CONFIG_NAME,
    EXACT_PRECISION_CONFIG,  # noqa: F401 (documented as `modeling.EXACT_PRECISION_CONFIG`)
    MAX_DRAFT_TOKENS,
    MAX_REQUESTED_DRAFT_TOKENS,
    PROMPT_LOOKUP_DEFAULTS,
    PROMPT_LOOKUP_NGRAM_SIZE,
    SPECULATIVE_DEFAULTS,
    PLAIN_ONLY_SETTINGS,
    SPECULATION_ARGUMENTS,
    drafter_ov_config,
    eagle_head_compression,
    target_ov_config,
)
from .decoding import BannedTokens, DecodingStats, speculative_decode
from .drafters import DraftLength, DraftModelDrafter, Drafter, PromptLookupDrafter
from .eagle import EAGLE_SUBFOLDER, OVEagle, TreeSettings, attention_with_shared_mask, has_transformers_weights
from .kv_cache import attention_window, cache_rounded_to_16_bits, sequence_axis_is_supported
from .paged_session import PagedDecoderSession, decoder_session_for
from .sampling import SamplingSettings
from .targets import SequenceTarget, Target


logger = logging.getLogger(__name__)

class OVSpeculativeModelForCausalLM(OVModelForCausalLM):
    """OpenVINO causal LM with speculative generation: the target's own greedy choices, exact sampling, faster.

    Use it where you would use `OVModelForCausalLM`. `generate()` speculates when a drafter is available:

    * a draft model attached at load time (`from_pretrained(..., draft_model=...)`) or passed per call as
      `assistant_model=` (an `OVModelForCausalLM` sharing the target's vocabulary);
    * prompt lookup, per call: `prompt_lookup_num_tokens=N` (optionally `max_matching_ngram_size`);
    * an EAGLE head attached at load time (`from_pretrained(..., eagle_head=...)`): feature-level drafting of a
      dynamic token tree (EAGLE-2), verified in one target call. It takes precedence over an attached draft
      model; the tree shape can be set per call with `eagle_tree=TreeSettings(...)` or a dict.

    The number of drafted tokens adapts to how many the target accepts (`num_assistant_tokens_schedule`,
    `"heuristic"` by default here), down to plain decoding on text nothing can predict.

    The target runs at the device's default precision, as plain `OVModelForCausalLM` does (bf16 where the CPU has
    it): every emitted token is the target's greedy choice in the call that verified it, and output differs from
    plain decoding only where two tokens are nearly tied. `ov_config=EXACT_PRECISION_CONFIG` (f32) makes greedy output
    token-identical to plain f32 decoding. `model_id` and `draft_model` may also be `.gguf` files (llama, qwen2,
    qwen3; converted once and cached, `optimum_dynexec.gguf`), with `export=True` implied.

    Example:
    ```python
    >>> from optimum_dynexec import OVSpeculativeModelForCausalLM
    >>> model = OVSpeculativeModelForCausalLM.from_pretrained("target-dir", export=True, draft_model="draft-dir")
    >>> model.generate(**tokenizer("def fibonacci(n):", return_tensors="pt"), max_new_tokens=64)
    ```
    """

    def __init__(self, *args, draft_model: Optional[OVModelForCausalLM] = None, eagle: Optional[OVEagle] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._attach_draft(draft_model)
        self._attach_eagle(eagle)

    # ------------------------------------------------------------------------------------------- loading / saving

    @classmethod
    def from_pretrained(
        cls,
        model_id: Union[str, Path],
        *args,
        draft_model: Union[str, Path, OVModelForCausalLM, None] = None,
        draft_quantization_config=None,
        draft_ov_config: Optional[dict] = None,
        eagle_head: Union[str, Path, None] = None,
        eagle_tree: Union[TreeSettings, dict, None] = None,
        eagle_quantization_config=None,
        **kwargs,
    ):
        """Load (or with `export=True`, export) the target as `OVModelForCausalLM` does, and its draft.

        Args:
            model_id: the target, as for `OVModelForCausalLM.from_pretrained`.
            draft_model: a model id or directory (a transformers checkpoint, exported when it holds no OpenVINO
                IR) or a loaded `OVModelForCausalLM`. Defaults to the `draft/` sub-folder of `model_id` if present.
            draft_quantization_config: weight compression for the draft only; by default the draft gets the
                target's `quantization_config` / `load_in_8bit`.
            draft_ov_config: OpenVINO properties for the draft only, over the caller's `ov_config`. The draft
                (like an EAGLE head) inherits the caller's `ov_config` except its precision settings
                (`INFERENCE_PRECISION_HINT`, `KV_CACHE_PRECISION`): a drafter only proposes tokens, so its precision
                never changes the output, and it runs at the device's fastest (bf16 where the CPU has it) unless
                `draft_ov_config` says otherwise. It runs on as many threads as the target (on the benchmark
                fixture's draft, 2 threads beat 1 in every paired repeat, lab/experiments/draft_settings.py).
            eagle_head: a folder (or hub id) holding an EAGLE head in the published format (`config.json` with
                `num_hidden_layers: 1`, `fc.*`, `layers.0.*` weights), trained for this target, e.g. by
                `optimum-cli dynexec train-eagle`. Exporting it needs the target's transformers checkpoint
                (`model_id` with `export=True`). Defaults to the `eagle/` sub-folder of `model_id` if present.
            eagle_quantization_config: weight compression for the head when it is exported. By default the
                target's `quantization_config` / `load_in_8bit`, else 8-bit weights (`EAGLE_HEAD_DEFAULT_COMPRESSION`):
                the head only proposes tokens, so its precision never changes the output, and its weights are read
                from memory at every drafted token (8-bit measured faster end to end on the benchmark fixture,
                docs/lab-notebook.md). `False` keeps the head's weights in full precision.
            eagle_tree: the default EAGLE-2 tree shape (`TreeSettings` or a dict of `depth`, `top_k`,
                `total_tokens`; `top_k=1` drafts a chain).
            **kwargs: everything `OVModelForCausalLM.from_pretrained` takes (`export`, `ov_config`, `device`,
                `compile`, `quantization_config`, `load_in_8bit`, ...), applied to the target and the draft.
        """
        _check_model_argument(model_id, "model_id")
        if draft_model is not None and not isinstance(draft_model, OVModelForCausalLM):
            _check_model_argument(draft_model, "draft_model")
        if is_gguf(model_id):
            model_id, kwargs["export"] = checkpoint_for_gguf(model_id), True
        if Path(model_id).is_dir():
            remove_abandoned_staging(model_id)
        user_ov_config = kwargs.get("ov_config")
        kwargs["ov_config"] = target_ov_config(user_ov_config)
        # Compiled once the class is final: `compile()` picks crash-free properties (`openvino_cpu`).
        compile_now = kwargs.pop("compile", True)
        model = _load_ov_model(super().from_pretrained, model_id, "model_id", *args, compile=False, **kwargs)
        if not isinstance(model, OVSpeculativeModelForCausalLM):
            # optimum-intel swaps in its own subclass for some architectures (phi3, bloom, gpt_bigcode, ...).
            model.__class__ = _speculative_variant(type(model))
            model._attach_draft(None)
            model._attach_eagle(None)
        if compile_now:
            model.compile()
        if not model.stateful and cache_rounded_to_16_bits(model.model):
            logger.warning(
                "This stateless IR rounds its KV cache to 16 bits inside the graph (optimum-intel saves it so when a "
                "stateless model was loaded at bf16 before `save_pretrained`): speculative greedy output can then "
                "differ from plain decoding where two tokens are nearly tied. For token-identical output, export "
                "the target with `OVSpeculativeModelForCausalLM.from_pretrained(checkpoint, export=True, "
                "stateful=False)` (or `ov_config={'INFERENCE_PRECISION_HINT': 'f32'}`), or use a stateful export."
            )

        if draft_model is None:
            saved_draft = Path(model_id) / DRAFT_SUBFOLDER
            draft_model = saved_draft if (saved_draft / "openvino_model.xml").is_file() else None
        if draft_model is not None and not isinstance(draft_model, OVModelForCausalLM):
            draft_kwargs = {key: kwargs[key] for key in ("device", "compile", "trust_remote_code", "stateful")
                            if key in kwargs}
            draft_kwargs["ov_config"] = drafter_ov_config(user_ov_config, draft_ov_config)
            if draft_quantization_config is not None:
                draft_kwargs["quantization_config"] = draft_quantization_config
            else:
                for key in ("quantization_config", "load_in_8bit"):
                    if key in kwargs:
                        draft_kwargs[key] = kwargs[key]
            draft_model = load_draft_model(draft_model, **draft_kwargs)
        model._attach_draft(draft_model)
        model._attach_eagle(_load_eagle(model_id, eagle_head, eagle_tree, kwargs, eagle_quantization_config),
                            user_ov_config)
        return model

    def _attach_draft(self, draft_model: Optional[OVModelForCausalLM]) -> None:
        if draft_model is not None:
            check_draft_compatible(self, draft_model)
        self.draft_model = draft_model
        self._drafters: Dict[tuple, Drafter] = {}
        self.last_decoding_stats: Optional[DecodingStats] = None

    def _attach_eagle(self, eagle: Optional[OVEagle], user_ov_config: Optional[dict] = None) -> None:
        if eagle is not None:
            if not self.stateful:
                raise ValueError("EAGLE verifies draft trees on the stateful target graph: export the target with "
                                 "`stateful=True` (optimum-intel's default).")
            attention_with_shared_mask(self.model)  # fail at load, not at the first generate(), if not rewritable
        self.eagle = eagle
        self._user_ov_config = dict(user_ov_config or {})

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs):
        """Save the target's usual files, the draft in `draft/`, the EAGLE head in `eagle/` and
        `dynexec_config.json`, all or nothing.

        `OVModelForCausalLM.from_pretrained(save_directory)` still loads the target alone.
        """
        save_directory = Path(save_directory)
        with atomic_save_into(save_directory) as staging:
            super().save_pretrained(staging, **kwargs)
            our_config = {"speculative": {"draft_subfolder": DRAFT_SUBFOLDER if self.draft_model else None,
                                          "eagle_subfolder": EAGLE_SUBFOLDER if self.eagle else None}}
            if self.draft_model is not None:
                self.draft_model.save_pretrained(staging / DRAFT_SUBFOLDER)
            if self.eagle is not None:
                self.eagle.save_pretrained(staging / EAGLE_SUBFOLDER)
            (staging / DYNEXEC_CONFIG_NAME).write_text(json.dumps(our_config, indent=2) + "\n")
        # A part this model does not have must not survive from an earlier save: from_pretrained would load it.
        for subfolder in (DRAFT_SUBFOLDER, EAGLE_SUBFOLDER):
            if subfolder not in our_config["speculative"].values():
                shutil.rmtree(save_directory / subfolder, ignore_errors=True)

    def update_pkv_precision(self, force_fp32=False):
        """Stateless exports keep f32 cache ports at every precision: optimum-intel would give them the device's
        (bf16), and `save_pretrained` would then write an IR that rounds the cache to bf16 inside the graph, which no
        later load undoes (`kv_cache.cache_rounded_to_16_bits`); the plugin still computes at the device's precision."""
        super().update_pkv_precision(force_fp32=True)

    def compile(self):
        """Compile the target as `OVModelForCausalLM` does, with properties that avoid known OpenVINO crashes
        (`optimum_dynexec.openvino_cpu`)."""
        prepare_to_compile(self)
        super().compile()

    # ------------------------------------------------------------------------------------------------ generation

    def generate(
        self,
        inputs: Optional[torch.Tensor] = None,
        generation_config: Optional[GenerationConfig] = None,
        logits_processor=None,
        stopping_criteria=None,
        prefix_allowed_tokens_fn=None,
        synced_gpus=None,
        assistant_model=None,
        streamer=None,
        negative_prompt_ids=None,
        negative_prompt_attention_mask=None,
        **kwargs,
    ):
        """`transformers` `generate()`, speculative where a drafter applies (see the class docstring).

        Returns what the parent returns: a `LongTensor` of prompt + new tokens, or a `GenerateDecoderOnlyOutput`
        with `return_dict_in_generate=True`. After a speculative call, `self.last_decoding_stats` tells how many
        target calls were made and how many drafted tokens were accepted; after a plain one, it is `None`.
        """
        with self._generation_lock:
            return self._generate(inputs, generation_config, logits_processor, stopping_criteria,
                                  prefix_allowed_tokens_fn, synced_gpus, assistant_model, streamer, negative_prompt_ids,
                                  negative_prompt_attention_mask, kwargs)

    @property
    def _generation_lock(self) -> threading.RLock:
        """Serializes `generate()` calls on this object: they share the infer requests and the KV caches in them,
        so calls from several threads run one after the other (each gets exactly its sequential result)."""
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_lock", threading.RLock())
        return lock

    def _generate(self, inputs, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn,
                  synced_gpus, assistant_model, streamer, negative_prompt_ids, negative_prompt_attention_mask, kwargs):
        self.last_decoding_stats = None
        tokenizer = kwargs.pop("tokenizer", None)
        kwargs.pop("assistant_tokenizer", None)
        eagle_tree = _tree_settings(kwargs.pop("eagle_tree", None))
        prompt_lookup = not _unset("prompt_lookup_num_tokens", kwargs, generation_config, self.generation_config)
        for name, value in {**SPECULATIVE_DEFAULTS, **(PROMPT_LOOKUP_DEFAULTS if prompt_lookup else {})}.items():
            if _unset(name, kwargs, generation_config, self.generation_config):
                kwargs[name] = value
        config, model_kwargs = self._prepare_generation_config(generation_config, **kwargs)
        input_ids = inputs if inputs is not None else model_kwargs.get("input_ids")
        if input_ids is None:
            raise ValueError("Pass the prompt as `inputs` or `input_ids` (a LongTensor of shape [1, length]).")
        _check_prompt(input_ids, model_kwargs.get("attention_mask"), self.config.vocab_size)
        _check_generation_settings(config, input_ids.shape[1])

        target_and_drafter = self._target_and_drafter(config, assistant_model, eagle_tree)
        reason = self._reason_to_decode_plainly(
            config, input_ids, logits_processor, prefix_allowed_tokens_fn, negative_prompt_ids, model_kwargs
        )
        if target_and_drafter is None or reason is not None:
            if target_and_drafter is not None:
                self._warn_once(f"Speculative decoding is off for calls with {reason}; they decode plainly.")
            return self._generate_plainly(
                inputs, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn,
                synced_gpus, streamer, negative_prompt_ids, negative_prompt_attention_mask, tokenizer, kwargs,
            )
        return self._generate_speculatively(config, input_ids, model_kwargs, target_and_drafter, stopping_criteria,
                                            streamer, tokenizer)

    def _warn_once(self, message: str) -> None:
        warned = self.__dict__.setdefault("_warned", set())
        if message not in warned:
            warned.add(message)
            logger.warning(message)

    def _generate_speculatively(self, config, input_ids, model_kwargs, target_and_drafter, stopping_criteria, streamer,
                                tokenizer):
        input_ids = torch.as_tensor(input_ids)
        attention_mask = model_kwargs.get("attention_mask")
        prompt = input_ids[0].numpy().astype(np.int64)
        if attention_mask is not None:
            prompt = prompt[torch.as_tensor(attention_mask)[0].numpy().astype(bool)]
        max_new_tokens = config.max_new_tokens
        if max_new_tokens is None:
            max_new_tokens = config.max_length - input_ids.shape[1]
        eos = config.eos_token_id
        eos_ids = [] if eos is None else ([int(eos)] if np.isscalar(eos) or isinstance(eos, int) else
                                          [int(e) for e in torch.as_tensor(eos).reshape(-1).tolist()])
        sampling = SamplingSettings(config.temperature or 1.0, config.top_k, config.top_p) if config.do_sample else None
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item())) if sampling else None
        should_stop = self._user_stopping_rule(config, stopping_criteria, tokenizer)
        # transformers' min-length processors count `min_length` over the whole (padded) input.
        banned = BannedTokens(
            eos_until=max(config.min_new_tokens or 0, (config.min_length or 0) - input_ids.shape[1]),
            eos_ids=tuple(eos_ids),
            always=tuple(int(token) for token in config.suppress_tokens or ()),
            at_first=tuple(int(token) for token in config.begin_suppress_tokens or ()),
        )

        on_tokens = None
        if streamer is not None:
            streamer.put(input_ids.cpu())
            on_tokens = lambda tokens: streamer.put(torch.from_numpy(tokens.copy()))  # noqa: E731

        stats = DecodingStats()
        new_tokens = np.zeros(0, dtype=np.int64)
        if max_new_tokens > 0:
            new_tokens = speculative_decode(*target_and_drafter, prompt, max_new_tokens, eos_ids, sampling, rng,
                                            should_stop, on_tokens, stats, banned)
        if streamer is not None:
            streamer.end()
        self.last_decoding_stats = stats
        sequences = torch.cat([input_ids, torch.from_numpy(new_tokens)[None]], dim=1)
        if config.return_dict_in_generate:
            return GenerateDecoderOnlyOutput(sequences=sequences)
        return sequences

    def _generate_plainly(self, inputs, generation_config, logits_processor, stopping_criteria,
                          prefix_allowed_tokens_fn, synced_gpus, streamer, negative_prompt_ids,
                          negative_prompt_attention_mask, tokenizer, kwargs):
        for name in list(SPECULATIVE_DEFAULTS) + list(SPECULATION_ARGUMENTS):
            kwargs.pop(name, None)
        if generation_config is not None and generation_config.prompt_lookup_num_tokens is not None:
            generation_config = GenerationConfig.from_dict(generation_config.to_dict())
            generation_config.prompt_lookup_num_tokens = None
        if tokenizer is not None:
            kwargs["tokenizer"] = tokenizer
        return super().generate(
            inputs, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn, synced_gpus,
            None, streamer, negative_prompt_ids, negative_prompt_attention_mask, **kwargs,
        )

    def _target_session(self):
        session = decoder_session_for(self)
        if isinstance(session, PagedDecoderSession):
            self._release_plain_graph()
        return session

    def _release_plain_graph(self) -> None:
        """Speculation runs on graphs of its own (the paged rewrite; for EAGLE, the paged or tree-masked one), a second
        compiled copy of the weights: release optimum-intel's own, once, until a call falls back to plain
        `generate()`, whose forward() compiles it again (and keeps it)."""
        if not getattr(self, "_released_plain_graph", False):
            self._released_plain_graph = True
            if not self._compile_only:
                self.clear_requests()

    def _target_and_drafter(self, config: GenerationConfig, assistant_model,
                            eagle_tree: Optional[TreeSettings] = None) -> Optional[Tuple[Target, Drafter]]:
        """What speculates in this call: the EAGLE head (tree drafts, `eagle_tree` or the head's default shape) with
        the tree-verifying target, or a chain drafter with the target's session; `None` when nothing drafts."""
        if config.prompt_lookup_num_tokens is None and assistant_model is None and self.eagle is not None:
            if not self.eagle.is_compiled:
                self.eagle.compile(self.model, self._device, target_ov_config(self._user_ov_config),
                                   drafter_ov_config(self._user_ov_config), attention_window(self.config))
            target_and_drafter = self.eagle.target_and_drafter(eagle_tree)
            self._release_plain_graph()
            return target_and_drafter
        drafter = self._drafter_for(config, assistant_model)
        return None if drafter is None else (SequenceTarget(self._target_session()), drafter)

    def _drafter_for(self, config: GenerationConfig, assistant_model) -> Optional[Drafter]:
        """The chain drafter this call asks for: prompt lookup, the per-call assistant, or the attached draft."""
        if config.prompt_lookup_num_tokens is not None:
            if assistant_model is not None:
                raise ValueError("Pass either `assistant_model` or `prompt_lookup_num_tokens`, not both.")
            maximum = _draft_token_count(config.prompt_lookup_num_tokens, "prompt_lookup_num_tokens")
            draft_length = DraftLength(maximum, maximum, config.num_assistant_tokens_schedule)
            # Prompt lookup is rebuilt per call: its only state is the adapted length, which follows the text.
            ngram_size = config.max_matching_ngram_size
            return PromptLookupDrafter(draft_length, PROMPT_LOOKUP_NGRAM_SIZE if ngram_size is None else ngram_size)
        draft_model = assistant_model if assistant_model is not None else self.draft_model
        if draft_model is None:
            return None
        if assistant_model is not None:
            if not isinstance(assistant_model, OVModelForCausalLM):
                raise TypeError(
                    "`assistant_model` must be an optimum.intel `OVModelForCausalLM` (load it with "
                    f"`OVModelForCausalLM.from_pretrained(..., export=True)`), got {type(assistant_model).__name__}."
                )
            check_draft_compatible(self, assistant_model)
        # The drafter (and its adapted draft length) lives across calls while the draft model and settings stay.
        key = (id(draft_model), config.num_assistant_tokens, config.num_assistant_tokens_schedule,
               config.assistant_confidence_threshold)
        if key not in self._drafters:
            draft_length = DraftLength(
                _draft_token_count(config.num_assistant_tokens, "num_assistant_tokens"), MAX_DRAFT_TOKENS,
                config.num_assistant_tokens_schedule,
            )
            self._drafters = {key: DraftModelDrafter(
                decoder_session_for(draft_model), draft_length, config.assistant_confidence_threshold or 0.0
            )}
        return self._drafters[key]

    def _reason_to_decode_plainly(self, config, input_ids, logits_processor, prefix_allowed_tokens_fn,
                                  negative_prompt_ids, model_kwargs) -> Optional[str]:
        if input_ids.shape[0] != 1:
            return f"batch size {input_ids.shape[0]}: speculation runs one sequence at a time"
        for name, neutral in PLAIN_ONLY_SETTINGS.items():
            value = getattr(config, name, neutral)
            if value is not None and value != neutral and not (neutral is None and value in (0, 1.0, False)):
                return f"`{name}={value}` is not supported with speculation"
        if logits_processor:
            return "custom `logits_processor`"
        if prefix_allowed_tokens_fn is not None:
            return "`prefix_allowed_tokens_fn`"
        if negative_prompt_ids is not None:
            return "`negative_prompt_ids`"
        if model_kwargs.get("past_key_values") is not None:
            return "`past_key_values` given by the caller"
        if not self.stateful:
            unsupported = sequence_axis_is_supported(self)
            if unsupported:
                return unsupported
        return None

    @staticmethod
    def _user_stopping_rule(config, stopping_criteria, tokenizer):
        criteria = StoppingCriteriaList(list(stopping_criteria or []))
        if config.stop_strings is not None:
            if tokenizer is None:
                raise ValueError("`stop_strings` needs the tokenizer: pass `tokenizer=` to `generate()`.")
            criteria.append(StopStringCriteria(tokenizer=tokenizer, stop_strings=config.stop_strings))
        if config.max_time is not None:
            criteria.append(MaxTimeCriteria(max_time=config.max_time))
        if not criteria:
            return None
        return lambda sequence: bool(criteria(torch.from_numpy(sequence)[None], None).any())


def _unset(name: str, kwargs: dict, generation_config: Optional[GenerationConfig], model_config) -> bool:
    return (
        kwargs.get(name) is None
        and getattr(generation_config, name, None) is None
        and getattr(model_config, name, None) is None
    )


# optimum-intel's `_from_pretrained` builds some families with its own subclass (`init_cls`) rather than the class it
# was called on; the model then becomes the matching declared class below, which adds speculation to that subclass.
class OVSpeculativePhi3ForCausalLM(OVSpeculativeModelForCausalLM, OVPhi3ForCausalLM):
    """`OVSpeculativeModelForCausalLM` for Phi-3 (optimum-intel's `OVPhi3ForCausalLM`)."""


class OVSpeculativeBloomForCausalLM(OVSpeculativeModelForCausalLM, OVBloomForCausalLM):
    """`OVSpeculativeModelForCausalLM` for BLOOM exported before transformers 4.44 (`OVBloomForCausalLM`)."""


class OVSpeculativeGPTBigCodeForCausalLM(OVSpeculativeModelForCausalLM, OVGPTBigCodeForCausalLM):
    """`OVSpeculativeModelForCausalLM` for GPT-BigCode (optimum-intel's `OVGPTBigCodeForCausalLM`)."""


_FAMILY_CLASSES = {OVPhi3ForCausalLM: OVSpeculativePhi3ForCausalLM, OVBloomForCausalLM: OVSpeculativeBloomForCausalLM,
                   OVGPTBigCodeForCausalLM: OVSpeculativeGPTBigCodeForCausalLM}


def _speculative_variant(base: type) -> type:
    """The declared speculative class for an optimum-intel family subclass; a TypeError for one we do not know (such
    as the state-space models' class, whose cache cannot be rolled back)."""
    if base not in _FAMILY_CLASSES:
        raise TypeError(
            f"optimum-intel loads this model as {base.__name__}, which OVSpeculativeModelForCausalLM does not support "
            "(speculation needs a KV cache it can roll back). Load it with optimum.intel.OVModelForCausalLM."
        )
    return _FAMILY_CLASSES[base]


def _tree_settings(tree: Union[TreeSettings, dict, None]) -> Optional[TreeSettings]:
    if tree is None or isinstance(tree, TreeSettings):
        return tree
    if isinstance(tree, dict):
        unknown = set(tree) - {"depth", "top_k", "total_tokens", "min_confidence"}
        if unknown:
            raise ValueError(f"`eagle_tree` takes depth, top_k, total_tokens and min_confidence; unknown: "
                             f"{sorted(unknown)}.")
        return TreeSettings(**tree)
    raise TypeError(f"`eagle_tree` must be a TreeSettings or a dict, got {type(tree).__name__}.")


def _load_eagle(model_id, eagle_head, eagle_tree, kwargs, eagle_quantization_config=None) -> Optional[OVEagle]:
    """The EAGLE part: exported from `eagle_head` for the target checkpoint `model_id`, or loaded from `eagle/`."""
    tree = _tree_settings(eagle_tree)
    saved = Path(model_id) / EAGLE_SUBFOLDER
    if eagle_head is None:
        return OVEagle.load(saved, tree) if OVEagle.is_saved_in(saved) else None
    if OVEagle.is_saved_in(eagle_head):
        return OVEagle.load(eagle_head, tree)
    if not has_transformers_weights(model_id) and Path(model_id).exists():
        raise ValueError(
            f"`eagle_head` needs the target's transformers checkpoint to export the head (it shares the target's "
            f"embedding and lm_head), and {model_id} holds none (only OpenVINO IR?). Pass the transformers checkpoint "
            "with `export=True`, or a folder "
            "written by `save_pretrained` that already contains `eagle/`."
        )
    # Checked before the (slow) export of the head.
    quantization_config = eagle_head_compression(eagle_quantization_config, kwargs.get("quantization_config"),
                                                 bool(kwargs.get("load_in_8bit")))
    return OVEagle.export(model_id, eagle_head, quantization_config, tree,
                          trust_remote_code=kwargs.get("trust_remote_code", False))


def load_draft_model(draft: Union[str, Path], **kwargs) -> OVModelForCausalLM:
    """Load a draft model from a directory or model id, exporting it to OpenVINO when it holds no IR."""
    _check_model_argument(draft, "draft_model")
    if is_gguf(draft):
        draft = checkpoint_for_gguf(draft)
    draft_path = Path(draft)
    export = not (draft_path / "openvino_model.xml").is_file()
    if export and draft_path.exists() and not (draft_path / "config.json").is_file():
        raise ValueError(
            f"`draft_model` directory {draft_path} holds neither an OpenVINO model (openvino_model.xml) nor a "
            "transformers checkpoint (config.json)."
        )
    compile_now = kwargs.pop("compile", True)
    draft_model = _load_ov_model(OVModelForCausalLM.from_pretrained, draft, "draft_model", export=export,
                                 compile=False, **kwargs)
    if compile_now:
        prepare_to_compile(draft_model)
        draft_model.compile()
    return draft_model


def _check_model_argument(model_id, argument: str) -> None:
    """A clear error for a model argument that is not a model: the wrong type, or a local path that does not exist
    (which the hub would otherwise report as an invalid repository id)."""
    if not isinstance(model_id, (str, Path)):
        raise TypeError(f"`{argument}` must be a folder path or a model id (str or Path), got "
                        f"{type(model_id).__name__}.")
    text = str(model_id)
    if looks_like_local_path(model_id) and not Path(text).expanduser().exists():
        raise ValueError(f"`{argument}`: {text} does not exist. Pass the folder of an OpenVINO export or of a "
                         "transformers checkpoint (with `export=True`).")


def _load_ov_model(load, model_id, argument: str, *args, **kwargs):
    """`load(model_id, ...)` (an optimum-intel `from_pretrained`) with its failures on unreadable files, or on an id
    that is neither a local folder nor on the hub, said as a `ValueError` that names the argument and the fix."""
    try:
        return load(model_id, *args, **kwargs)
    except RuntimeError as error:  # OpenVINO cannot read the IR (truncated .xml or .bin)
        files = [name for name in ("openvino_model.xml", "openvino_model.bin") if (Path(model_id) / name).is_file()]
        raise ValueError(
            f"`{argument}`: OpenVINO cannot read the model in {model_id} ({', '.join(files) or 'no IR files'}): "
            f"{openvino_error_reason(error)}. The files are damaged or incomplete; export the model again "
            "(`from_pretrained(checkpoint, export=True)` then `save_pretrained`, or `optimum-cli export dynexec`)."
        ) from error
    except Exception as error:  # an id that is no local folder: the hub's errors (not found, invalid, no network)
        if Path(str(model_id)).expanduser().exists():
            raise
        raise ValueError(
            f"`{argument}`={str(model_id)!r} is neither a local folder nor a model this machine can download "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}). Pass the "
            "folder of an OpenVINO export or a transformers checkpoint."
        ) from error


def _draft_token_count(value, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_REQUESTED_DRAFT_TOKENS:
        raise ValueError(f"`{argument}` must be an integer from 1 to {MAX_REQUESTED_DRAFT_TOKENS}, got {value!r}.")
    return int(value)


def _check_prompt(input_ids, attention_mask, vocab_size: Optional[int]) -> None:
    """Clear errors for prompts OpenVINO would fail on deep inside, or answer wrongly."""
    if not isinstance(input_ids, (torch.Tensor, np.ndarray)):
        raise TypeError(f"`input_ids` must be a torch.LongTensor of shape [batch, length] (e.g. "
                        f"`tokenizer(text, return_tensors='pt')`), got {type(input_ids).__name__}.")
    if input_ids.ndim != 2:
        raise ValueError(f"`input_ids` must have shape [batch, length], got shape {tuple(input_ids.shape)}: add the "
                         "batch axis (`input_ids[None]`) or tokenize with `return_tensors='pt'`.")
    ids = torch.as_tensor(input_ids)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"`input_ids` must hold integer token ids, got dtype {ids.dtype}.")
    if ids.shape[1] == 0:
        raise ValueError("`input_ids` is empty: the prompt needs at least one token (e.g. the BOS token).")
    if vocab_size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"`input_ids` holds token ids outside the model's vocabulary [0, {vocab_size}): was it "
                         "tokenized with this model's tokenizer?")
    if attention_mask is not None:
        mask = torch.as_tensor(attention_mask)
        if tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"`attention_mask` must have the shape of `input_ids` {tuple(ids.shape)}, got "
                             f"{tuple(mask.shape)}.")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("`attention_mask` must hold only 0 (padding) and 1 (token).")
        if bool((mask.sum(dim=1) == 0).any()):
            raise ValueError("`attention_mask` masks out every token of a prompt: each row needs at least one 1.")


def _check_generation_settings(config: GenerationConfig, input_length: int) -> None:
    """The settings checks plain `generate()` makes too, made before anything runs."""
    if config.max_new_tokens is None and config.max_length is not None and config.max_length <= input_length:
        raise ValueError(f"Input length of input_ids is {input_length}, but `max_length` is set to "
                         f"{config.max_length}: set `max_new_tokens` (or a larger `max_length`).")
    if config.do_sample and config.temperature is not None and not config.temperature > 0:
        raise ValueError(f"`temperature` (={config.temperature}) must be strictly positive for sampling; for greedy "
                         "decoding set `do_sample=False`.")
    for name in ("min_new_tokens", "min_length"):
        value = getattr(config, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")


def _logits_width(ov_model: OVModelForCausalLM) -> int:
    for port in ov_model.model.outputs:
        if "logits" in port.get_names():
            return port.get_partial_shape()[-1].get_length()
    raise ValueError(f"{type(ov_model).__name__} has no `logits` output.")


def check_draft_compatible(target: OVModelForCausalLM, draft: OVModelForCausalLM) -> None:
    """Raise a `ValueError` when the draft cannot propose tokens for the target (different vocabularies)."""
    target_width, draft_width = _logits_width(target), _logits_width(draft)
    if target_width != draft_width:
        raise ValueError(
            f"The draft model's vocabulary ({draft_width} logits) differs from the target's ({target_width}). "
            "Speculative decoding needs a draft that shares the target's tokenizer: pick a smaller model of the "
            "same family, or train one with the target's tokenizer."
        )
