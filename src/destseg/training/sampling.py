"""Seeds per epoch and per image: what makes training reproducible, resumable and independent
of the number of processes.

Every epoch shuffles with a generator seeded with ``(seed, epoch)``, and every image draws its
augmentation (and the LDM's shuffle) from seeds of ``(seed, epoch, index)``, so a step sees the
same images, augmented the same way, whatever the process, loader worker or batch that loads
them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch's shuffling and of the model's own draws (dropout) in process
    ``rank``, inside torch's 64-bit seed range for any training seed. Each process draws its own
    dropout masks (the same seed everywhere would drop the same units of every shard); process
    0's seed is the one-process run's."""
    if rank == 0:
        return (seed * 10_007 + epoch) % 2**63
    words = np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)
    return int(words[0] % 2**63)


def sample_seeds(seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Two independent seeds for image ``index`` in ``epoch``: one for its augmentation, one
    for what the model draws for it (the LDM's shuffle). They depend on nothing else: not on
    the process or loader worker that loads the image, nor on the batch it lands in."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(4, dtype=np.uint64)
    return int(words[0] % 2**63), int(words[1] % 2**63)


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)``, every item's random augmentation drawn from
    its own seed (:func:`sample_seeds`); the item also carries the model's seed for it under
    ``"seed"``. The epoch travels with the index (:class:`EpochSampler`) rather than being
    set on the dataset, so loader workers that live across epochs (persistent workers) draw
    what a fresh loader would."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        augment, model = sample_seeds(self.seed, epoch, index)
        with torch.random.fork_rng(devices=[]):  # the caller's CPU generator is left as it was
            torch.random.default_generator.manual_seed(augment)
            item = self.dataset[index]
        return {**item, "seed": model}


class EpochSampler(Sampler):
    """The indices a ``DistributedSampler`` gives for its current epoch, each paired with that
    epoch: the keys of :class:`SeededSamples`."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.sampler.epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
