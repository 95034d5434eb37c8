"""The precision a training run picks, keeps across a resume, and what each precision promises.

Whatever CPU runs these: the default (repeatable) is fp32 on every CPU; the other kinds of device
are injected (imgtrain.devices.Capability / the measured speed-up), see also test_devices.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import imgtrain
from imgtrain import ParameterError, TrainConfig, devices
from imgtrain.training import start as training  # the run picks its precision at its start (training/start.py)

EPOCHS = 1  # 24 training images in batches of 8: 3 batches per epoch


def _checkpoint(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a run's last checkpoint."""
    path = out / "checkpoint" / "last.safetensors"
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return json.loads(header["__metadata__"]["imgtrain"]), load_file(path)


def _stopped_at(monkeypatch, point: str, data, out: Path, epochs: int = EPOCHS, **config) -> dict:
    """Train until SIGTERM after `point` (batch:E.B); return the checkpoint's metadata."""
    model, train, valid, spec = data
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", point)
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(imgtrain.TrainingInterrupted):
        imgtrain.train(
            model, train, valid, out, TrainConfig(epochs=epochs, batch_size=8, progress=False, **config), spec
        )
    monkeypatch.delenv("IMGTRAIN_CRASH_AT")
    return _checkpoint(out)[0]


def _precision_of(out: Path) -> str:
    return imgtrain.open_model_directory(out).meta["training"]["precision"]


def test_same_seed_twice_through_the_cli_gives_bit_identical_weights(run_cli, small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    imgtrain.init_transform(tmp_path / "spec.json", spec)
    for name in ("first", "second"):
        code, _, err = run_cli(
            "train",
            "--model",
            model,
            "--train",
            train,
            "--valid",
            valid,
            "--out",
            tmp_path / name,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--transform",
            tmp_path / "spec.json",
        )
        assert code == 0, err
    first, second = (load_file(tmp_path / name / "model.safetensors") for name in ("first", "second"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    training_meta = imgtrain.open_model_directory(tmp_path / "first").meta["training"]
    assert training_meta["precision"] == "fp32" and training_meta["repeatable"] is True


def test_a_resume_keeps_the_precision_the_run_started_in(small_training_data, tmp_path, monkeypatch):
    # a CPU with native bf16 where bf16 measured 1.9x faster when the run started...
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    measured = []
    monkeypatch.setattr(training, "measure_speedup", lambda *a, **k: measured.append(a[-1]) or 1.9)
    out = tmp_path / "run"
    meta = _stopped_at(monkeypatch, "batch:1.2", small_training_data, out, repeatable=False)
    assert meta["state"]["precision"] == "bf16" and measured == ["bf16"]
    # ...and 0.5x on the second start: the run still continues in bf16, without measuring again
    monkeypatch.setattr(training, "measure_speedup", lambda *a, **k: measured.append(a[-1]) or 0.5)
    model, train, valid, spec = small_training_data
    resume = TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, repeatable=False, resume=True)
    with pytest.raises(ParameterError, match="started in bf16, not fp32"):
        imgtrain.train(model, train, valid, out, dataclasses.replace(resume, precision="fp32"), spec)
    history = imgtrain.train(model, train, valid, out, resume, spec)
    assert [row["epoch"] for row in history] == [1] and measured == ["bf16"]
    assert _precision_of(out) == "bf16"


def test_changing_the_repeatable_setting_on_resume_is_refused(small_training_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _stopped_at(monkeypatch, "batch:1.2", small_training_data, out)
    model, train, valid, spec = small_training_data
    with pytest.raises(ParameterError, match="these differ: repeatable"):
        imgtrain.train(
            model,
            train,
            valid,
            out,
            TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, repeatable=False, resume=True),
            spec,
        )


def _scaler_steps(scaler: dict) -> float:
    """Optimizer steps a GradScaler has seen: each one either halved the scale (inf gradients) or counted one up."""
    return math.log2(65536.0 / scaler["scale"]) + scaler["_growth_tracker"]


def test_fp16_keeps_one_loss_scaler_through_epochs_checkpoints_and_resume(small_training_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    meta = _stopped_at(monkeypatch, "batch:2.2", small_training_data, out, epochs=2, precision="fp16")
    assert meta["state"]["precision"] == "fp16"
    assert _scaler_steps(meta["state"]["scaler"]) == 5  # 3 batches of epoch 1 + 2 of epoch 2: one scaler
    meta = _stopped_at(monkeypatch, "batch:2.3", small_training_data, out, epochs=2, precision="fp16", resume=True)
    assert _scaler_steps(meta["state"]["scaler"]) == 6  # the resumed run went on with the saved scaler


def test_bf16_resume_continues_from_the_very_batch_it_stopped_after(small_training_data, tmp_path, monkeypatch, caplog):
    """bf16 kernels need not be bit-repeatable; what holds: the saved state is restored and the run goes on
    from the next batch of the same epoch (none repeated, none skipped)."""
    out = tmp_path / "run"
    first = _stopped_at(monkeypatch, "batch:1.2", small_training_data, out, precision="bf16")
    assert "not guaranteed to be bit-repeatable" in caplog.text
    weights = _checkpoint(out)[1]
    assert first["state"]["partial"]["batches"] == 2 and first["state"]["partial"]["seen"] == 16
    second = _stopped_at(monkeypatch, "batch:1.3", small_training_data, out, precision="bf16", resume=True)
    partial = second["state"]["partial"]
    assert (partial["epoch"], partial["batches"], partial["seen"]) == (1, 3, 24)
    assert partial["loss_sum"] > first["state"]["partial"]["loss_sum"]
    assert not torch.equal(_checkpoint(out)[1]["model.fc.weight"], weights["model.fc.weight"])  # one more step
    model, train, valid, spec = small_training_data
    history = imgtrain.train(
        model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, resume=True), spec
    )
    assert [row["epoch"] for row in history] == [1] and _precision_of(out) == "bf16"


def _edit_checkpoint_meta(out: Path, edit) -> None:
    path = out / "checkpoint" / "last.safetensors"
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["imgtrain"])
    edit(meta)
    header["__metadata__"]["imgtrain"] = json.dumps(meta)
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + size :])


def test_a_checkpoint_from_before_the_precision_policy_still_resumes(small_training_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _stopped_at(monkeypatch, "batch:1.2", small_training_data, out)

    def older(meta):  # the resolved precision lived in the fingerprint, and there was no `repeatable`
        state = meta["state"]
        del state["precision"], state["scaler"], state["fingerprint"]["repeatable"]
        state["fingerprint"]["precision"] = "fp32"

    _edit_checkpoint_meta(out, older)
    model, train, valid, spec = small_training_data
    history = imgtrain.train(
        model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, resume=True), spec
    )
    assert [row["epoch"] for row in history] == [1] and _precision_of(out) == "fp32"


def test_a_checkpoint_from_before_a_parameter_existed_resumes_with_its_default(
    small_training_data, tmp_path, monkeypatch
):
    """A parameter an older checkpoint's fingerprint lacks held its declared default then (training/state.py): the
    run resumes with the default and is refused, naming the parameter, with another value."""
    out = tmp_path / "run"
    _stopped_at(monkeypatch, "batch:1.2", small_training_data, out)
    _edit_checkpoint_meta(
        out,
        lambda meta: [
            meta["state"]["fingerprint"].pop(key)
            for key in ("label_smoothing", "class_weights", "sampler", "head_lr_scale")
        ],
    )
    model, train, valid, spec = small_training_data
    with pytest.raises(imgtrain.ParameterError, match="these differ: label_smoothing"):
        imgtrain.train(
            model,
            train,
            valid,
            out,
            TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, resume=True, label_smoothing=0.1),
            spec,
        )
    history = imgtrain.train(
        model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, resume=True), spec
    )
    assert [row["epoch"] for row in history] == [1]


@pytest.mark.parametrize(
    "field, value",
    [
        ("precision", "fp8"),
        ("precision", 16),
        ("scaler", {"scale": -1}),
        (
            "scaler",
            {
                "scale": float("inf"),
                "growth_factor": 2.0,
                "backoff_factor": 0.5,
                "growth_interval": 2000,
                "_growth_tracker": 0,
            },
        ),
    ],
)
def test_a_damaged_precision_or_scaler_in_a_checkpoint_is_named(
    small_training_data, tmp_path, monkeypatch, field, value
):
    out = tmp_path / "run"
    _stopped_at(monkeypatch, "batch:1.2", small_training_data, out)
    _edit_checkpoint_meta(out, lambda meta: meta["state"].__setitem__(field, value))
    model, train, valid, spec = small_training_data
    with pytest.raises(imgtrain.CheckpointError, match=f"metadata is damaged \\({field}\\)"):
        imgtrain.train(
            model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, resume=True), spec
        )


def test_optimizer_settings_edited_in_a_checkpoint_are_refused(small_training_data, tmp_path, monkeypatch):
    """Found by the fuzz test: momentum null in the saved param groups crashed fused SGD with a TypeError."""
    out = tmp_path / "run"
    _stopped_at(monkeypatch, "batch:1.2", small_training_data, out)
    _edit_checkpoint_meta(out, lambda meta: meta["param_groups"][0].__setitem__("momentum", None))
    model, train, valid, spec = small_training_data
    with pytest.raises(imgtrain.CheckpointError, match="optimizer settings are not this run's"):
        imgtrain.train(
            model, train, valid, out, TrainConfig(epochs=EPOCHS, batch_size=8, progress=False, resume=True), spec
        )
