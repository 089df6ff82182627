"""`OVEagle`: the OpenVINO side of EAGLE for one target, as it lives in the `eagle/` sub-folder of a saved model.

`eagle/` holds

* `config.json` + `model.safetensors`: the head in the published EAGLE format (portable, re-trainable);
* `openvino_eagle_head.xml/.bin`: the head exported with the target's embedding and lm_head, its own KV cache;
* `eagle_config.json`: the default tree shape (and, for an EAGLE-3 head, the target layers it fuses);
* `openvino_model.xml/.bin`, EAGLE-3 heads only: the draft IR openvino-genai and OpenVINO Model Server load
  (`serving.py`), so the folder serves as `openvino_genai.draft_model(<saved>/eagle)` next to the target.

The target needs no second copy on disk: its verifying graphs are derived, when compiled, from the target's own
`openvino_model.xml` (`eagle.target_with_feature_output` rewritten to paged attention for chains,
`eagle.target_with_features` for trees), which stays as optimum-intel wrote it for `OVModelForCausalLM` users.
"""

import json
import shutil
from pathlib import Path
from typing import Optional, Tuple, Union

import openvino as ov

from ...openvino_cpu import crash_free, has_state
from ...utils.io import atomic_directory
from ...utils.model_files import openvino_error_reason
from ...weight_compression import compress_weights
from ..kv_cache import TreeDecoderSession
from ..logits_rows import with_logits_rows
from ..paged_session import PagedDecoderSession, paged_graph
from ..targets import SequenceTarget, Target, TreeTarget
from .drafter import EagleDrafter, TreeSettings
from .eagle3 import Eagle3Head, Eagle3Wiring
from .serving import export_genai_draft
from .graphs import export_eagle_head, target_with_feature_output, target_with_features
from .head import load_eagle_head
from .head_files import HEAD_CONFIG, HEAD_WEIGHTS_BIN, HEAD_WEIGHTS_SAFETENSORS


EAGLE_SUBFOLDER = "eagle"
HEAD_IR = "openvino_eagle_head.xml"
EAGLE_CONFIG = "eagle_config.json"
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                         "pytorch_model.bin.index.json")


class OVEagle:
    """An EAGLE head exported to OpenVINO, for one target.

    Build it with `OVEagle.export(target_checkpoint, head_dir)` or load a saved one with `OVEagle.load(folder)`;
    `compile(target_model)` derives the target's tree-verifying graph from its optimum-intel graph, and
    `target_and_drafter(settings)` gives what `generate()` runs.

    Args:
        head_model (`openvino.Model`): `eagle.export_eagle_head(...)`.
        head_folder: the head's published-format files (copied into `eagle/` on save).
        tree (`TreeSettings`): the default tree shape.
        eagle3 (`Eagle3Wiring`, *optional*): for an EAGLE-3 head, the target layers it fuses, its `fc` and its draft
            vocabulary.
    """

    def __init__(self, head_model: ov.Model, head_folder: Path, tree: TreeSettings = TreeSettings(),
                 eagle3: Optional[Eagle3Wiring] = None):
        self.head_model = head_model
        self.head_folder = Path(head_folder)
        self.tree = tree
        self.eagle3 = eagle3
        self._head = None  # the compiled head, set by `compile`
        self._target_recipe = None
        self._targets = {}  # "chain" / "tree": the verifying targets compiled so far
        self._drafter = None

    # ----------------------------------------------------------------------------------------------- building

    @classmethod
    def export(cls, target_checkpoint: Union[str, Path], eagle_head: Union[str, Path], quantization_config=None,
               tree: Optional[TreeSettings] = None, trust_remote_code: bool = False) -> "OVEagle":
        """Export the head for the target checkpoint (a transformers folder or hub id), whose embedding and
        lm_head the head shares.

        `quantization_config` (an optimum-intel `OVWeightQuantizationConfig` or dict) compresses the head's weights
        as optimum-intel compresses the target's.
        """
        import torch
        from transformers import AutoModelForCausalLM

        head_dir = _local_folder(eagle_head, "eagle_head")
        target = AutoModelForCausalLM.from_pretrained(target_checkpoint, dtype=torch.float32,
                                                      trust_remote_code=trust_remote_code).eval()
        head = load_eagle_head(head_dir, target)
        head_model = export_eagle_head(head)
        eagle3 = Eagle3Wiring.of(head) if isinstance(head, Eagle3Head) else None
        del target, head
        if quantization_config:
            head_model = compress_weights(head_model, quantization_config)
        saved_tree = head_dir / EAGLE_CONFIG
        if tree is None and saved_tree.is_file():
            tree = TreeSettings(**json.loads(saved_tree.read_text())["tree"])
        return cls(head_model, head_dir, tree or TreeSettings(), eagle3)

    @classmethod
    def load(cls, folder: Union[str, Path], tree: Optional[TreeSettings] = None) -> "OVEagle":
        """Load an `eagle/` folder written by `save_pretrained`."""
        folder = Path(folder)
        for name in (HEAD_IR, HEAD_CONFIG):
            if not (folder / name).is_file():
                raise ValueError(f"{folder} is not a saved EAGLE folder: {name} is missing.")
        core = ov.Core()
        saved = json.loads((folder / EAGLE_CONFIG).read_text()) if (folder / EAGLE_CONFIG).is_file() else {}
        if tree is None and "tree" in saved:
            tree = TreeSettings(**saved["tree"])
        eagle3 = Eagle3Wiring.read(folder, saved["eagle3_feature_layers"]) if "eagle3_feature_layers" in saved else None
        # `with_logits_rows`: heads saved before that input existed load too.
        try:
            head_model = core.read_model(folder / HEAD_IR)
        except RuntimeError as error:
            raise ValueError(
                f"OpenVINO cannot read the EAGLE head {folder / HEAD_IR}: {openvino_error_reason(error)}. The "
                "files are damaged or incomplete; export the head again (`eagle_head=` with `export=True`)."
            ) from error
        return cls(with_logits_rows(head_model), folder, tree or TreeSettings(), eagle3)

    @staticmethod
    def is_saved_in(folder: Union[str, Path]) -> bool:
        return (Path(folder) / HEAD_IR).is_file()

    def save_pretrained(self, save_directory: Union[str, Path]) -> None:
        """Write the `eagle/` folder contents into `save_directory` (complete or not at all)."""
        with atomic_directory(Path(save_directory)) as staging:
            for name in (HEAD_CONFIG, HEAD_WEIGHTS_SAFETENSORS, HEAD_WEIGHTS_BIN):
                if (self.head_folder / name).is_file():
                    shutil.copy2(self.head_folder / name, staging / name)
            ov.save_model(self.head_model, staging / HEAD_IR, compress_to_fp16=False)
            saved = {"tree": {"depth": int(self.tree.depth), "top_k": int(self.tree.top_k),
                              "total_tokens": int(self.tree.total_tokens),
                              "min_confidence": float(self.tree.min_confidence)}}
            if self.eagle3 is not None:
                saved["eagle3_feature_layers"] = list(self.eagle3.feature_layers)
                export_genai_draft(staging, staging, self.eagle3.feature_layers)
            (staging / EAGLE_CONFIG).write_text(json.dumps(saved, indent=2) + "\n")

    # ------------------------------------------------------------------------------------------------ running

    def compile(self, target_model: ov.Model, device: str = "CPU", target_config: Optional[dict] = None,
                head_config: Optional[dict] = None, target_window: Optional[int] = None) -> None:
        """Compile the head with `head_config`, and keep what the target's verifying graphs are derived from:
        `target_model` (optimum-intel's stateful target graph), compiled with `target_config` (f32 for exact greedy)
        when a generation first needs it. `target_window`: the target's sliding attention window
        (`kv_cache.attention_window`), which the tree masks then apply."""
        self._head = ov.Core().compile_model(self.head_model, device,
                                             crash_free(head_config, device, has_state(self.head_model)))
        self._target_recipe = (target_model, device, target_config, target_window)
        self._targets = {}
        self._drafter = None

    @property
    def is_compiled(self) -> bool:
        return self._head is not None

    def target_and_drafter(self, tree: Optional[TreeSettings] = None) -> Tuple[Target, EagleDrafter]:
        """What `decoding.speculative_decode` runs: the verifying target and the head's drafter, drafting `tree`
        (default: `self.tree`). Both are reused between calls (each owns an infer request and its KV cache).

        Chains are verified on the paged-attention form of the target (`SequenceTarget`), the session the other
        drafters' chains run on, and trees on the tree-masked graph (`TreeTarget`); each is compiled at its first
        use (a second copy of the target's weights if a model drafts both)."""
        if self._head is None:
            raise ValueError("Call `compile()` before asking for the target and drafter.")
        settings = tree or self.tree
        if self._drafter is None:
            self._drafter = EagleDrafter(self._head, draft_to_target=None if self.eagle3 is None else
                                         self.eagle3.draft_to_target)
        self._drafter.settings = settings
        return self._target(chain=settings.top_k == 1), self._drafter

    def _target(self, chain: bool) -> Target:
        """The target that verifies chains (the paged one, where the graph allows it) or trees, compiled once."""
        kind = "chain" if chain else "tree"
        if kind not in self._targets:
            model, device, config, window = self._target_recipe
            layers, fuse = (None, None) if self.eagle3 is None else (self.eagle3.feature_layers, self.eagle3.fuse)
            paged = paged_graph(target_with_feature_output(model, layers, fuse)) if chain else None
            core = ov.Core()
            if paged is not None:
                compiled = core.compile_model(paged, device, crash_free(config, device, stateful_graph=True))
                self._targets[kind] = SequenceTarget(PagedDecoderSession(compiled))
            elif "tree" in self._targets:
                self._targets[kind] = self._targets["tree"]
            else:  # a tree, or a graph the paged rewrite cannot decode exactly: the tree-masked graph verifies both
                graph = target_with_features(model, layers, fuse)
                compiled = core.compile_model(graph, device, crash_free(config, device, has_state(graph)))
                self._targets["tree"] = self._targets[kind] = TreeTarget(
                    TreeDecoderSession(compiled.create_infer_request(), window=window))
        return self._targets[kind]


def has_transformers_weights(folder: Union[str, Path]) -> bool:
    """Whether `folder` holds a transformers checkpoint (needed to export a head, which shares its embedding)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in _TRANSFORMERS_WEIGHTS)


def _local_folder(model_id: Union[str, Path], argument: str) -> Path:
    path = Path(model_id)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"`{argument}` must be a folder (or a hub id), got the file {path}.")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model_id)))
    except Exception as error:
        raise ValueError(f"`{argument}`={model_id!r} is neither a local folder nor a reachable hub id: {error}")
