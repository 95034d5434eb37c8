"""The model catalog: every family's head sized to the classes, pretrained backbones, input sizes, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

import imgtrain
from imgtrain import Architecture, TrainConfig
from imgtrain.models.catalog import accepts_input, catalog_names, head_keys, minimum_size

#: One network of each family torchvision has (classifier layers differ per family).
FAMILY_MEMBERS = [
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "maxvit_t",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_y_400mf",
    "resnet18",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "squeezenet1_0",
    "swin_t",
    "swin_v2_t",
    "vgg11",
    "vit_b_16",
    "wide_resnet50_2",
]


def test_the_catalog_holds_every_family_with_imagenet_weights():
    names = catalog_names()
    assert set(FAMILY_MEMBERS) <= set(names) and len(names) >= 70
    assert "googlenet" not in names and "inception_v3" not in names  # auxiliary outputs: left out, documented


@pytest.mark.parametrize("name", FAMILY_MEMBERS)
def test_each_familys_head_is_sized_to_the_classes(tmp_path, name):
    family = name.rstrip("0123456789") if name in ("densenet121", "resnet18") else "torchvision"
    model = imgtrain.create_model_directory(tmp_path / "m", Architecture(family, name), pretrained=False)
    with torch.random.fork_rng(devices=[]):
        net = model.architecture.build(num_classes=3).to("meta")  # built for real, then shapes only
    width, height = minimum_size("torchvision", name)
    side = max(width, height, 32)
    side = side if accepts_input("torchvision", name, side, side) else max(width, height)
    assert net.eval()(torch.empty(2, 3, side, side, device="meta")).shape == (2, 3)
    heads = head_keys("torchvision", name)
    assert heads and all(net.state_dict()[k].shape[0] == 3 for k in heads if k.endswith("weight"))


def test_a_pretrained_backbone_of_another_family_loads_without_its_head(tmp_path):
    imagenet = torchvision.models.mobilenet_v3_small(num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "mobilenet.pth")
    model = imgtrain.create_model_directory(
        tmp_path / "m", Architecture("torchvision", "mobilenet_v3_small"), weights=tmp_path / "mobilenet.pth"
    )
    stored = model.backbone_weights()
    assert not set(stored) & head_keys("torchvision", "mobilenet_v3_small")
    assert set(stored) | head_keys("torchvision", "mobilenet_v3_small") == set(imagenet.state_dict())
    assert torch.equal(stored["features.0.0.weight"], imagenet.state_dict()["features.0.0.weight"])


def test_a_catalog_network_trains_and_scores(small_training_data, tmp_path):
    _, train, valid, _ = small_training_data
    imgtrain.create_model_directory(tmp_path / "u", Architecture("torchvision", "mobilenet_v3_small"), pretrained=False)
    spec = imgtrain.TransformSpec(size=32, crop_size=32)
    history = imgtrain.train(
        tmp_path / "u", train, valid, tmp_path / "t", TrainConfig(epochs=1, batch_size=8, progress=False), spec
    )
    assert len(history) == 1
    rows = imgtrain.score(tmp_path / "t", valid, progress=False)
    assert len(rows) == 9 and all(
        abs(sum(v for k, v in r.items() if k.startswith("Scored Prob")) - 1) < 1e-4 for r in rows
    )


def test_a_network_made_for_one_input_size_refuses_others_before_training(small_training_data, tmp_path):
    _, train, valid, _ = small_training_data
    imgtrain.create_model_directory(tmp_path / "u", Architecture("torchvision", "vit_b_16"), pretrained=False)
    with pytest.raises(imgtrain.InvalidDatasetError, match="vit_b_16 needs at least 224x224"):
        imgtrain.train(
            tmp_path / "u",
            train,
            valid,
            tmp_path / "t",
            TrainConfig(epochs=1, batch_size=8, progress=False),
            imgtrain.TransformSpec(size=32, crop_size=32),
        )
    with pytest.raises(imgtrain.InvalidDatasetError, match="cannot take .*crop to 224x224"):
        imgtrain.train(
            tmp_path / "u",
            train,
            valid,
            tmp_path / "t",
            TrainConfig(epochs=1, batch_size=8, progress=False),
            imgtrain.TransformSpec(size=256, crop_size=240),
        )


def test_model_and_models_commands(run_cli, tmp_path, monkeypatch):
    from imgtrain.models.weights import imagenet_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    code, out, _ = run_cli("models", "--json")
    rows = {row["model"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0 and set(rows) == set(catalog_names())
    assert rows["efficientnet_b0"]["top1"] == pytest.approx(77.692) and rows["efficientnet_b0"]["cached"] is False
    code, out, _ = run_cli("models")
    assert code == 0 and "efficientnet_b0" in out and "top-1" in out
    code, out, _ = run_cli("model", tmp_path / "m", "--model-name", "efficientnet_b0", "--no-pretrained")
    assert code == 0 and "efficientnet_b0" in out
    code, _, err = run_cli("model", tmp_path / "x", "--model-name", "efficientnet_b99", "--no-pretrained")
    assert code == 1 and "imgtrain models" in err
    code, _, err = run_cli("model", tmp_path / "y", "--model-name", "efficientnet_b0")  # the suite is offline
    cached = imagenet_weights("efficientnet_b0").path  # efficientnet_b0_rwightman-7f5810bc.pth
    assert code == 1 and "PretrainedWeightsError" in err and cached.name in err and str(cached.parent) in err


def test_freeze_epochs_train_the_head_alone_and_keep_the_backbone_and_its_statistics(
    small_training_data, tmp_path, monkeypatch
):
    """--freeze-epochs 1, as `train --help` documents it: during that epoch only the new head learns; the pretrained
    backbone's weights and BatchNorm statistics come out exactly as they went in. From epoch 2 the backbone learns."""
    from safetensors.torch import load_file

    _, train, valid, spec = small_training_data
    pretrained = torchvision.models.resnet18(num_classes=1000)
    torch.save(pretrained.state_dict(), tmp_path / "w.pth")
    imgtrain.create_model_directory(tmp_path / "u", Architecture("resnet", "resnet18"), weights=tmp_path / "w.pth")
    backbone = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("fc.")}
    config = TrainConfig(epochs=2, batch_size=8, freeze_epochs=1, patience=5, progress=False)
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:2.1")  # stop after epoch 2's first step; its checkpoint holds it
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(imgtrain.TrainingInterrupted):
        imgtrain.train(tmp_path / "u", train, valid, tmp_path / "t", config, spec)
    saved = load_file(tmp_path / "t" / "checkpoint" / "last.safetensors")
    after_frozen = {k[5:]: v for k, v in saved.items() if k.startswith("best.")}  # epoch 1, the only one finished
    after_step = {k[6:]: v for k, v in saved.items() if k.startswith("model.")}  # one step into epoch 2
    assert [k for k in backbone if not torch.equal(after_frozen[k], backbone[k])] == []  # weights, statistics
    assert not torch.equal(after_frozen["fc.weight"], after_step["fc.weight"])  # the head learns throughout
    assert not torch.equal(after_step["conv1.weight"], backbone["conv1.weight"])
    assert not torch.equal(after_step["bn1.running_mean"], backbone["bn1.running_mean"])


def test_a_pretrained_backbone_gets_a_new_head_that_starts_at_chance(small_training_data, tmp_path):
    """A random head on pretrained features made large, confident logits (a first-epoch loss of 4.2 where log(10)
    = 2.3, measured), and fine-tuning then trailed training from scratch: the new head starts at zero."""
    _, train, valid, spec = small_training_data
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), tmp_path / "w.pth")
    imgtrain.create_model_directory(tmp_path / "u", Architecture("resnet", "resnet18"), weights=tmp_path / "w.pth")
    config = TrainConfig(epochs=1, batch_size=8, freeze_epochs=1, learning_rate=1e-12, progress=False)
    imgtrain.train(tmp_path / "u", train, valid, tmp_path / "t", config, spec)
    for row in imgtrain.score(tmp_path / "t", valid, progress=False):
        probabilities = [v for k, v in row.items() if k.startswith("Scored Probabilities_")]
        assert probabilities == pytest.approx([1 / 3] * 3, abs=1e-6)
