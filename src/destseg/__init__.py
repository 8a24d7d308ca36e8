"""Weakly supervised semantic segmentation by destruction learning.

The library behind the DVC stages: datasets in PASCAL VOC layout, the classifier and segmenter,
class activation maps, dense CRF refinement and the metrics. It takes arrays, tensors and plain
values and knows nothing of DVC or params.yaml.
"""

__version__ = "0.1.0"
