"""Weakly supervised semantic segmentation by destruction learning.

The library behind the DVC stages, one package per concern in the pipeline's order: ``dataset``
(the VOC layout, ids, splits, the torch dataset and the sources), ``models`` (the networks and
their files), ``training`` (the loop, seeding, resume), ``cam``, ``affinity`` (pairs, the walk),
``refine`` (the CRF and the labellers), ``evaluation`` (metrics, thresholds, inference),
``figures`` and ``runtime`` (devices, processes, files). It takes arrays, tensors and plain
values and knows nothing of DVC or params.yaml. The subpackages' ``__init__`` files stay empty,
so a stage depends on exactly the modules it imports.
"""

__version__ = "0.1.0"
