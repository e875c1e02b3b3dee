"""Model specs: torchvision:NAME, MODULE:FACTORY, PATH.py:FACTORY, --weights; one clear error
per bad input, nothing stored."""

import json
import textwrap

import pytest
import torch
import torch.nn as nn

from pruneviz.cli import main
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.modelspec import build_spec, make_model, parse_spec
from pruneviz.session import dense_config, dense_key
from pruneviz.store import Store

FAST = ["--dense-epochs", "1", "--epochs", "1", "--max-steps-per-epoch", "3", "--eval-limit",
        "64", "--device", "cpu"]

USER_MODULE = textwrap.dedent('''
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self, in_channels=1, num_classes=10):
            super().__init__()
            self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
            self.norm = nn.BatchNorm2d(8)
            self.body = nn.Conv2d(8, 16, 3, padding=1)
            self.head = nn.Linear(16, num_classes)

        def forward(self, x):
            x = self.body(self.norm(self.stem(x)).relu()).relu()
            return self.head(x.mean((2, 3)))

    def build(num_classes, in_channels):
        return Net(in_channels, num_classes)

    def build_any(**kwargs):
        return Net(kwargs["in_channels"], kwargs["num_classes"])

    def raises(num_classes):
        raise RuntimeError("no GPU here")

    def not_module():
        return "a string"

    def needs_depth(depth, num_classes=10):
        return Net(1, num_classes)

    def wrong_input():
        return Net(3, 10)

    def wrong_classes(in_channels):
        return Net(in_channels, 7)
''')


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    path = folder / "mynet.py"
    path.write_text(USER_MODULE)
    (folder / "mynet.txt").write_text(USER_MODULE)
    net = build_spec(f"{path}:build", (1, 8, 8), 10)
    torch.save(net.state_dict(), folder / "good.pt")
    state = net.state_dict()
    torch.save({k: v for k, v in state.items() if k != "head.bias"}, folder / "missing.pt")
    torch.save({**state, "extra.weight": torch.ones(2)}, folder / "unexpected.pt")
    torch.save({**state, "head.weight": torch.ones(3, 16)}, folder / "shaped.pt")
    torch.save(net, folder / "whole.pt")
    (folder / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip")
    return path


@pytest.fixture(scope="module")
def spec_store(tmp_path_factory):
    return tmp_path_factory.mktemp("specs") / "runs"


def test_torchvision_spec_is_adapted_to_the_dataset():
    model = build_spec("torchvision:mobilenet_v3_small", (1, 16, 16), 7)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 16, 16)).shape == (2, 7)


def test_factory_gets_only_the_arguments_its_signature_names(user_file):
    model = build_spec(f"{user_file}:build", (3, 8, 8), 4)
    assert model.stem.in_channels == 3 and model.head.out_features == 4
    model = build_spec(f"{user_file}:build_any", (2, 8, 8), 5)
    assert model.stem.in_channels == 2 and model.head.out_features == 5


def test_module_factory_on_the_path(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    assert parse_spec("mynet:build").kind == "module"
    model = make_model("mynet:build", (1, 8, 8), 10, example=torch.zeros(2, 1, 8, 8),
                       weights=str(user_file.parent / "good.pt"))
    ref = torch.load(user_file.parent / "good.pt", weights_only=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_dense_cache_keys_on_the_spec_and_the_weights_content(user_file, tmp_path):
    a = dense_config(SessionConfig(model=f"{user_file}:build"))
    copy = tmp_path / "copy.pt"
    copy.write_bytes((user_file.parent / "good.pt").read_bytes())
    same = dense_key(a.replace(weights=str(user_file.parent / "good.pt")))
    assert dense_key(a.replace(weights=str(copy))) == same != dense_key(a)
    copy.write_bytes((user_file.parent / "shaped.pt").read_bytes())
    assert dense_key(a.replace(weights=str(copy))) != same
    assert dense_key(a.replace(model=f"{user_file}:build_any")) != dense_key(a)


def test_user_file_with_weights_trains_and_compacts(user_file, spec_store, capsys):
    assert main(["run", "--store", str(spec_store), "--json", *FAST, "--method", "l2_filter",
                 "--rate", "0.5", "--model", f"{user_file}:build",
                 "--weights", str(user_file.parent / "good.pt")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["model"] == f"{user_file}:build"
    assert "compact_error" not in summary and summary["filters_removed"] > 0


def _bad(user_file):
    folder = user_file.parent
    spec = str(user_file)
    return [
        (["--model", f"{folder}/absent.py:build"], "no such file"),
        (["--model", f"{folder}/mynet.txt:build"], "not a .py file"),
        (["--model", spec], "PATH.py:FACTORY"),
        (["--model", f"{spec}:nosuch"], "defines no 'nosuch'"),
        (["--model", f"{spec}:raises"], "raised RuntimeError: no GPU here"),
        (["--model", f"{spec}:not_module"], "not a torch.nn.Module"),
        (["--model", f"{spec}:needs_depth"], "requires depth"),
        (["--model", f"{spec}:wrong_input"], "forward fails on the dataset's input"),
        (["--model", f"{spec}:wrong_classes"], "10 classes"),
        (["--model", "pruneviz_no_such_pkg:build"], "no module named"),
        (["--model", "torchvision:mobilenet_v9"], "torchvision has no classification model"),
        (["--model", f"{spec}:build", "--weights", f"{folder}/absent.pt"], "no such file"),
        (["--model", f"{spec}:build", "--weights", f"{folder}/corrupt.pt"], "not a readable"),
        (["--model", f"{spec}:build", "--weights", f"{folder}/whole.pt"], "unpickling runs code"),
        (["--model", f"{spec}:build", "--weights", f"{folder}/missing.pt"],
         "missing keys: head.bias"),
        (["--model", f"{spec}:build", "--weights", f"{folder}/unexpected.pt"],
         "unexpected keys: extra.weight"),
        (["--model", f"{spec}:build", "--weights", f"{folder}/shaped.pt"],
         "mis-shaped: head.weight (3, 16)"),
    ]


BAD_IDS = ["missing file", "not py", "no factory given", "factory not found", "factory raises",
           "not a module", "needs an argument", "forward fails", "wrong classes",
           "module not found", "unknown torchvision", "weights missing", "weights corrupt",
           "pickled model", "missing keys", "unexpected keys", "mis-shaped keys"]


@pytest.mark.parametrize("case", range(len(BAD_IDS)), ids=BAD_IDS)
def test_bad_model_input_exits_2_with_one_line_and_stores_nothing(user_file, spec_store, capsys,
                                                                  case):
    args, needle = _bad(user_file)[case]
    before = len(Store(spec_store).runs(include_dense=True)) if spec_store.exists() else 0
    assert main(["run", "--store", str(spec_store), *FAST, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:") and needle in err[0], err
    after = len(Store(spec_store).runs(include_dense=True)) if spec_store.exists() else 0
    assert after == before


def test_pickled_model_says_what_to_save_instead(user_file):
    with pytest.raises(ConfigError, match=r"torch.save\(model.state_dict\(\), path\)"):
        make_model(f"{user_file}:build", (1, 8, 8), 10,
                   weights=str(user_file.parent / "whole.pt"))
