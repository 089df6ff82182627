"""EAGLE (Li et al. 2024, arXiv 2401.15077; EAGLE-2, arXiv 2406.16858; EAGLE-3, arXiv 2503.01840): feature-level
drafting for one target.

    head.py      the EAGLE-1/2 torch head and the published checkpoint format (load / save, both generations)
    head_files.py  the file names of a published head folder, and reading its tensors
    eagle3.py    the EAGLE-3 head: fused low/middle/high target features, a draft vocabulary
    graphs.py    its OpenVINO graphs: the head, and the target rewritten to verify trees and output its features
    drafter.py   `EagleDrafter`: chains or dynamic trees, a `drafters.Drafter` run by the one loop (`decoding.py`)
    ov_eagle.py  `OVEagle`: the `eagle/` sub-folder of a saved model, compiled into a target and a drafter
    training.py  training a head on the target's features (`optimum-cli dynexec train-eagle`)
"""

from .drafter import EagleDrafter, TreeSettings
from .graphs import attention_with_shared_mask, export_eagle_head, target_with_features
from .eagle3 import Eagle3Head, Eagle3Wiring, default_feature_layers, eagle3_config_from_target
from .head import EagleHead, eagle_config_from_target, load_eagle_head, save_eagle_head
from .ov_eagle import EAGLE_SUBFOLDER, OVEagle, has_transformers_weights

__all__ = ["EagleDrafter", "TreeSettings", "attention_with_shared_mask", "export_eagle_head", "target_with_features",
           "EagleHead", "eagle_config_from_target", "load_eagle_head", "save_eagle_head", "EAGLE_SUBFOLDER", "OVEagle",
           "has_transformers_weights", "Eagle3Head", "Eagle3Wiring", "default_feature_layers",
           "eagle3_config_from_target"]
