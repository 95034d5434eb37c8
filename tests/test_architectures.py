"""DenseNet / ResNet modules: untrained model directories, weights from local files only."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import imgtrain
from imgtrain import Architecture, InvalidModelDirectoryError, ParameterError
from imgtrain.models.architectures import open_untrained


def test_no_pretrained_writes_a_versioned_description(tmp_path):
    model = imgtrain.create_model_directory(
        tmp_path / "m", Architecture("resnet", "resnet50", {"zero_init_residual": True}), pretrained=False
    )
    meta = json.loads((tmp_path / "m" / "imgtrain-model.json").read_text())
    assert meta["format"] == "imgtrain.untrained_model" and meta["format_version"] == 1
    assert meta["architecture"] == {
        "family": "resnet",
        "model_name": "resnet50",
        "options": {"zero_init_residual": True},
    }
    assert meta["torchvision_version"] == torchvision.__version__
    assert meta["pretrained"] is False and not (tmp_path / "m" / "weights.safetensors").exists()
    assert model.backbone_weights() is None


def test_cli_defaults_are_the_designers(run_cli, tmp_path):
    code, out, _ = run_cli("densenet", "--help")
    assert "(default: densenet201)" in " ".join(out.split())
    code, out, _ = run_cli("resnet", "--help")
    assert "(default: resnext101_32x8d)" in " ".join(out.split())
    code, out, _ = run_cli("densenet", tmp_path / "d", "--no-pretrained", "--memory-efficient")
    assert code == 0
    assert open_untrained(tmp_path / "d").architecture == Architecture(
        "densenet", "densenet201", {"memory_efficient": True}
    )


def _resnet18_weights(path, fmt="safetensors"):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_weights_file_is_stored_as_safetensors_without_the_head(tmp_path, fmt):
    state = _resnet18_weights(tmp_path / f"w.{fmt}", fmt)
    model = imgtrain.create_model_directory(
        tmp_path / "m", Architecture("resnet", "resnet18"), weights=tmp_path / f"w.{fmt}"
    )
    stored = model.backbone_weights()
    assert "fc.weight" not in stored and len(stored) == len(state) - 2
    assert torch.equal(stored["conv1.weight"], state["conv1.weight"])


def test_weights_of_another_architecture_are_refused(tmp_path):
    _resnet18_weights(tmp_path / "w.safetensors")
    with pytest.raises(ParameterError, match="do not fit resnet34"):
        imgtrain.create_model_directory(
            tmp_path / "m", Architecture("resnet", "resnet34"), weights=tmp_path / "w.safetensors"
        )


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickle_with_code_is_never_run(tmp_path, capsys):
    torch.save({"conv1.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ParameterError, match="cannot be read"):
        imgtrain.create_model_directory(
            tmp_path / "m", Architecture("resnet", "resnet18"), weights=tmp_path / "evil.pth"
        )
    assert "pickled code ran" not in capsys.readouterr().out


def test_old_densenet_key_names_are_understood(tmp_path):
    state = torchvision.models.densenet121().state_dict()
    old = {
        k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save(old, tmp_path / "old.pth")
    model = imgtrain.create_model_directory(
        tmp_path / "m", Architecture("densenet", "densenet121"), weights=tmp_path / "old.pth"
    )
    assert "features.denseblock1.denselayer1.norm1.weight" in model.backbone_weights()


@pytest.mark.parametrize("name", ["resnet19", "densenet121"])
def test_unknown_model_name_is_a_parameter_error(name):
    with pytest.raises(ParameterError, match="resnet18"):
        Architecture("resnet", name)


def test_not_a_model_directory_says_why(tmp_path, labeled_folder):
    images = imgtrain.convert(labeled_folder, tmp_path / "images")
    with pytest.raises(InvalidModelDirectoryError, match="image directory"):
        open_untrained(images.root)
    with pytest.raises(InvalidModelDirectoryError, match="not a directory"):
        open_untrained(tmp_path / "nothing")
    imgtrain.create_model_directory(tmp_path / "m", Architecture("resnet", "resnet18"), pretrained=False)
    meta = tmp_path / "m" / "imgtrain-model.json"
    meta.write_text(meta.read_text().replace("resnet18", "resnet99"))
    with pytest.raises(InvalidModelDirectoryError, match="resnet99"):
        open_untrained(tmp_path / "m")
