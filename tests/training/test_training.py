from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from destseg.dataset.torch_dataset import VOCDataset, train_transform
from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model
from destseg.runtime.device import Precision, resolve_device, resolve_precision
from destseg.training.checkpoint import CheckpointRefused, CheckpointWarning
from destseg.training.loop import Schedule, build_optimizer, fit
from destseg.training.sampling import epoch_seed


def _loss(model, batch, _progress=0.0):
    return F.multilabel_soft_margin_loss(model(batch["image"]), batch["target"])


CPU = Precision(torch.device("cpu"))


def _train(
    layout,
    epochs,
    checkpoint,
    fingerprint="same",
    log=None,
    precision=CPU,
    loss=_loss,
    images=None,
    validate_every=1,
):
    torch.manual_seed(0)
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    model = build_model(Classifier, config)
    ids = layout.ids("train")[:images]
    dataset = VOCDataset(layout, ids, train_transform(48, (0.7, 1.3), 0.2))
    optimizer = build_optimizer("sgd", model.param_groups(0.01, 10, 1e-4))
    start = fit(
        model,
        dataset,
        loss,
        optimizer=optimizer,
        schedule=Schedule(epochs, 4, seed=1),
        precision=precision,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        validate=lambda m: {"score": 0.5},
        validate_every=validate_every,
        log=log,
    )
    return model, start


def test_validation_runs_every_few_epochs_and_after_the_last(tiny_layout, tmp_path):
    logged = []
    _train(
        tiny_layout,
        5,
        tmp_path / "c.pt",
        log=lambda e, s, t: logged.append((e, "val/score" in s)),
        images=4,
        validate_every=2,
    )
    assert logged == [(0, False), (1, True), (2, False), (3, True), (4, True)]


def test_validating_every_zero_epochs_is_refused_before_training(tiny_layout, tmp_path):
    with pytest.raises(ValueError, match="validate_every must be 1 or more epochs, not 0"):
        _train(tiny_layout, 1, tmp_path / "c.pt", log=None, images=4, validate_every=0)
    assert not (tmp_path / "c.pt").exists()


def test_terms_a_loss_reports_are_logged_per_epoch_and_leave_training_unchanged(
    tiny_layout, tmp_path
):
    def with_terms(model, batch, progress):
        loss = _loss(model, batch, progress)
        return loss, {"half": loss.detach() / 2, "one": torch.ones(())}

    logs: dict[str, list] = {"without": [], "with": []}
    without, _ = _train(
        tiny_layout, 1, tmp_path / "a.pt", log=lambda e, s, t: logs["without"].append(s)
    )
    with_, _ = _train(
        tiny_layout,
        1,
        tmp_path / "b.pt",
        log=lambda e, s, t: logs["with"].append(s),
        loss=with_terms,
    )
    (scores,), (with_scores,) = logs["without"], logs["with"]
    assert with_scores["train/one"] == 1.0  # a mean over the images of the epoch
    assert with_scores["train/half"] == pytest.approx(with_scores["train/loss"] / 2)
    assert scores["train/loss"] == with_scores["train/loss"] and "train/half" not in scores
    for a, b in zip(without.state_dict().values(), with_.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resumed_training_equals_uninterrupted_training(tiny_layout, tmp_path):
    straight, _ = _train(tiny_layout, 2, tmp_path / "straight.pt")
    partial = tmp_path / "partial.pt"
    _train_one_epoch_checkpoint(tiny_layout, partial)
    assert len(torch.load(partial, weights_only=True)["history"]) == 1
    logged = []
    resumed, start = _train(tiny_layout, 2, partial, log=lambda e, s, t: logged.append((e, s)))
    assert start == 1
    # the log gets the interrupted run's epoch replayed, then the new one
    assert [e for e, _ in logged] == [0, 1]
    assert logged[0][1]["val/score"] == 0.5 and "train/loss" in logged[1][1]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def _train_one_epoch_checkpoint(layout, path, precision=CPU, images=None):
    """Run the 2-epoch schedule but stop after its first epoch, as a kill would."""

    class Stop(Exception):
        """Raised by the log hook, after the epoch's checkpoint is written."""

    def stop(epoch, scores, seconds):
        raise Stop

    with pytest.raises(Stop):
        _train(layout, 2, path, log=stop, precision=precision, images=images)


def test_a_checkpoint_of_other_params_is_not_resumed(tiny_layout, tmp_path, capsys):
    _train(tiny_layout, 1, tmp_path / "ck.pt", fingerprint="old")
    _, start = _train(tiny_layout, 1, tmp_path / "ck.pt", fingerprint="new")
    assert start == 0
    assert "written with other params or inputs; training starts over" in capsys.readouterr().out


def test_a_resumed_run_says_so(tiny_layout, tmp_path, capsys):
    _train_one_epoch_checkpoint(tiny_layout, tmp_path / "ck.pt")
    capsys.readouterr()
    _train(tiny_layout, 2, tmp_path / "ck.pt")
    assert (
        f"resuming from epoch 2 of 2 (checkpoint {tmp_path / 'ck.pt'})" in capsys.readouterr().out
    )


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _assert_starts_over(tiny_layout, tmp_path, checkpoint, match):
    straight, _ = _train(tiny_layout, 1, tmp_path / "straight.pt")
    with pytest.warns(CheckpointWarning, match=match):
        model, start = _train(tiny_layout, 1, checkpoint)
    assert start == 0
    for a, b in zip(straight.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)  # the same as a run that never saw the checkpoint


def _assert_refused_and_left_alone(tiny_layout, checkpoint, match):
    """Nothing trains, and the file is as it was: it may be anything of the user's."""
    before = checkpoint.read_bytes()
    with pytest.raises(CheckpointRefused, match=match):
        _train(tiny_layout, 1, checkpoint)
    assert checkpoint.read_bytes() == before


@pytest.mark.bad_input
def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tiny_layout, tmp_path):
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "ck.pt"
    torch.save(
        {"fingerprint": "same", "history": [_Payload(marker)], "model": {}, "optimizer": {},
         "scheduler": {}},
        checkpoint,
    )  # fmt: skip
    _assert_refused_and_left_alone(tiny_layout, checkpoint, "refused, as loading them could run")
    assert not marker.exists()


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # a crash while it was copied elsewhere
        lambda data: b"",
        lambda data: b"garbage" * 100,
        lambda data: b'{"image": "labels of the dataset"}',
    ],
    ids=["truncated", "empty", "garbage", "json"],
)
def test_a_file_that_is_not_a_checkpoint_is_refused_and_never_overwritten(
    tiny_layout, tmp_path, damage
):
    checkpoint = tmp_path / "ck.pt"
    _train_one_epoch_checkpoint(tiny_layout, checkpoint)
    checkpoint.write_bytes(damage(checkpoint.read_bytes()))
    _assert_refused_and_left_alone(
        tiny_layout, checkpoint, f"{checkpoint}: not a readable torch file.*left as it is"
    )


@pytest.mark.bad_input
def test_another_torch_file_at_the_checkpoint_path_is_refused(tiny_layout, tmp_path):
    model_file = tmp_path / "model.pt"  # another stage's model file
    torch.save({"kind": "classifier", "config": {}, "state_dict": {}}, model_file)
    _assert_refused_and_left_alone(tiny_layout, model_file, "not a resume checkpoint")


@pytest.mark.bad_input
def test_a_checkpoint_that_does_not_fit_the_model_is_ignored(tiny_layout, tmp_path):
    checkpoint = tmp_path / "ck.pt"
    _train_one_epoch_checkpoint(tiny_layout, checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {"conv.weight": torch.zeros(3)}
    torch.save(state, checkpoint)
    _assert_starts_over(tiny_layout, tmp_path, checkpoint, "does not fit this model")


def test_epoch_seeds_stay_in_torch_range_for_any_allowed_seed():
    for seed in (0, 1, 2**62, 2**63 - 1):
        for epoch in (0, 99):
            value = epoch_seed(seed, epoch)
            assert 0 <= value < 2**63
            torch.Generator().manual_seed(value)
    assert epoch_seed(3, 4) == 3 * 10_007 + 4  # unchanged for everyday seeds


def test_sgd_gets_momentum_and_weight_decay_in_their_slots():
    model = torch.nn.Linear(2, 2)
    groups = [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 1e-4}]
    optimizer = build_optimizer("sgd", groups, momentum=0.9)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("adam2", groups)


def test_batch_larger_than_dataset_is_a_clear_error(tiny_layout, tmp_path):
    model = build_model(
        Classifier, {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    )
    dataset = VOCDataset(tiny_layout, tiny_layout.ids("val"))
    optimizer = build_optimizer("adamw", model.param_groups(1e-3, 1, 0))
    with pytest.raises(ValueError, match="batch size 64"):
        fit(
            model,
            dataset,
            _loss,
            optimizer=optimizer,
            schedule=Schedule(1, 64, 0),
            precision=CPU,
            checkpoint=tmp_path / "c.pt",
            fingerprint="x",
        )


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == Precision(cpu)  # float32, contiguous: as before
    assert resolve_precision("off", cpu).name == "off"
    assert resolve_precision("bf16", cpu) == Precision(cpu, torch.bfloat16, channels_last=False)
    assert resolve_precision("fp16", cpu).dtype == torch.float16
    with pytest.raises(ValueError, match="amp 'fp8'"):
        resolve_precision("fp8", cpu)


def test_precision_on_cuda_without_touching_a_gpu(monkeypatch):
    cuda = torch.device("cuda")  # only named: nothing here runs on it
    assert resolve_precision("off", cuda) == Precision(cuda)  # float32, contiguous: as before
    assert resolve_precision("bf16", cuda) == Precision(cuda, torch.bfloat16, channels_last=True)
    for capability, dtype in [((7, 0), torch.float16), ((8, 0), torch.bfloat16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert resolve_precision("auto", cuda) == Precision(cuda, dtype, channels_last=True)


def test_a_checkpoint_from_before_mixed_precision_resumes(tiny_layout, tmp_path):
    partial = tmp_path / "partial.pt"
    _train_one_epoch_checkpoint(tiny_layout, partial)
    state = torch.load(partial, weights_only=True)
    del state["scaler"]  # what checkpoints held before amp existed
    torch.save(state, partial)
    _, start = _train(tiny_layout, 2, partial)
    assert start == 1


def _autocast_on_cpu(dtype):
    """Whether this torch runs a convolution in ``dtype`` under CPU autocast."""
    try:
        with torch.autocast("cpu", dtype=dtype):
            return torch.nn.Conv2d(3, 2, 3)(torch.randn(1, 3, 8, 8)).dtype == dtype
    except RuntimeError:
        return False


@pytest.mark.skipif(
    not _autocast_on_cpu(torch.bfloat16), reason="this torch has no bf16 autocast on the CPU"
)
def test_bf16_training_runs_the_network_in_bf16_and_keeps_float32_weights(tiny_layout, tmp_path):
    seen = []

    def loss(model, batch, _progress):
        logits = model(batch["image"])
        seen.append(logits.dtype)
        return F.multilabel_soft_margin_loss(logits, batch["target"])

    bf16 = resolve_precision("bf16", torch.device("cpu"))  # emulated on the CPU: one step
    model, _ = _train(tiny_layout, 1, tmp_path / "c.pt", precision=bf16, loss=loss, images=4)
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reference, _ = _train(tiny_layout, 1, tmp_path / "d.pt", images=4)
    # one step in bf16 lands near the float32 one, not on it
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)


@pytest.mark.skipif(
    not _autocast_on_cpu(torch.float16), reason="this torch has no fp16 autocast on the CPU"
)
def test_fp16_training_resumes_with_its_gradient_scaler(tiny_layout, tmp_path):
    # emulated on the CPU (3 s a step here): 1 step an epoch
    fp16 = resolve_precision("fp16", torch.device("cpu"))
    straight, _ = _train(tiny_layout, 2, tmp_path / "straight.pt", precision=fp16, images=4)
    partial = tmp_path / "partial.pt"
    _train_one_epoch_checkpoint(tiny_layout, partial, precision=fp16, images=4)
    scaler = torch.load(partial, weights_only=True)["scaler"]
    assert scaler["scale"] > 0  # a live scaler's state, saved to resume with
    resumed, start = _train(tiny_layout, 2, partial, precision=fp16, images=4)
    assert start == 1
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_channels_last_changes_the_layout_not_the_result(tiny_layout, tmp_path):
    # One step: over several, batch norm on 4 tiny crops can amplify the rounding differences
    # of the two layouts (measured up to 1e-2 after 3 steps, for some seeds) into real ones.
    cpu = torch.device("cpu")
    model, _ = _train(
        tiny_layout, 1, tmp_path / "a.pt", precision=Precision(cpu, None, True), images=4
    )
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    reference, _ = _train(tiny_layout, 1, tmp_path / "b.pt", images=4)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_params_schema_knows_the_same_amp_modes_and_reads_a_bare_off():
    from typing import get_args

    import yaml

    from destseg.runtime.device import AMP_MODES
    from stages.params.run import AMP_MODES as SCHEMA_MODES
    from stages.params.run import Amp, RunParams

    assert AMP_MODES == SCHEMA_MODES == get_args(get_args(Amp)[0])
    run = {"seed": 0, "device": "cpu"}
    # what `amp: off` in a YAML file, or `dvc exp run -S amp=off`, hands over
    assert RunParams.model_validate({**run, **yaml.safe_load("amp: off")}).amp == "off"
    assert RunParams.model_validate({**run, "amp": "bf16"}).amp == "bf16"


@pytest.mark.bad_input
@pytest.mark.parametrize("value", [True, "fp8", 16])
def test_params_refuse_an_unknown_amp_mode(value):
    from pydantic import ValidationError

    from stages.params.run import RunParams

    with pytest.raises(ValidationError, match="must be one of auto, bf16, fp16, off"):
        RunParams.model_validate({"seed": 0, "device": "cpu", "amp": value})


def test_each_process_draws_its_own_dropout_masks_and_process_0_the_single_runs():
    seeds = [epoch_seed(3, 4, rank) for rank in range(8)]
    assert seeds[0] == epoch_seed(3, 4) and len(set(seeds)) == 8
    assert all(0 <= s < 2**63 for s in seeds)
    torch.manual_seed(seeds[0])
    first = torch.nn.functional.dropout(torch.ones(64), 0.5)
    torch.manual_seed(seeds[1])
    assert not torch.equal(first, torch.nn.functional.dropout(torch.ones(64), 0.5))
