"""vit_tiny and gpt_tiny (pruneviz/transformers.py) and the text datasets (pruneviz/text.py):
a head's slices against a hand-written attention, physical removal against masking, causality,
the text splits and windows, and bad text input as one clear error."""

import math

import pytest
import torch
import torch.nn.functional as F

from pruneviz.cli.main import main
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.data import load_dataset
from pruneviz.models import build_model
from pruneviz.session import check
from pruneviz.text import CONTEXT, TextError, load_text, pydoc_topics, split_units
from pruneviz.transformers import (
    GPT,
    GPTConfig,
    SelfAttention,
    head_cols,
    head_mask,
    head_rows,
    remove_heads,
    remove_neurons,
)


def _random_gpt(seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=16, n_layer=2))
    with torch.no_grad():      # larger than GPT-2's init, so every head and neuron matters
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.mark.parametrize("causal", [True, False])
def test_a_heads_slices_are_the_ones_a_hand_written_attention_uses(causal):
    torch.manual_seed(1)
    attn = SelfAttention(n_embd=32, n_head=4, causal=causal).eval()
    x = torch.randn(2, 7, 32)
    W, b = attn.c_attn.weight, attn.c_attn.bias
    out = attn.c_proj.bias.expand(2, 7, 32).clone()
    for h in range(4):
        d = 8
        q = x @ W[h * d:(h + 1) * d].T + b[h * d:(h + 1) * d]
        k = x @ W[32 + h * d:32 + (h + 1) * d].T + b[32 + h * d:32 + (h + 1) * d]
        v = x @ W[64 + h * d:64 + (h + 1) * d].T + b[64 + h * d:64 + (h + 1) * d]
        s = q @ k.transpose(1, 2) / math.sqrt(d)
        if causal:
            s = s.masked_fill(torch.ones(7, 7).triu(1).bool(), float("-inf"))
        out += (s.softmax(-1) @ v) @ attn.c_proj.weight[:, h * d:(h + 1) * d].T
        rows = torch.cat([torch.arange(h * d, (h + 1) * d) + o for o in (0, 32, 64)])
        assert torch.equal(head_rows(attn, h), rows)
        assert torch.equal(head_cols(attn, h), torch.arange(h * d, (h + 1) * d))
    torch.testing.assert_close(attn(x), out, atol=1e-5, rtol=1e-5)


def _mask_model(model, heads, neurons):
    """Zero heads {block: [h]} and neurons {block: [j]} through head_mask and row/column zeros."""
    with torch.no_grad():
        for i, hs in heads.items():
            attn = model.blocks[i].attn
            keep = torch.ones(attn.n_head)
            keep[hs] = 0
            for key, m in head_mask(attn, keep).items():
                mod, name = key.split(".")
                getattr(getattr(attn, mod), name).mul_(m)
        for i, js in neurons.items():
            mlp = model.blocks[i].mlp
            mlp.c_fc.weight[js] = 0
            mlp.c_fc.bias[js] = 0
            mlp.c_proj.weight[:, js] = 0


def test_removing_heads_and_neurons_physically_gives_the_masked_models_outputs():
    model = _random_gpt()
    heads, neurons = {0: [1, 3], 1: [0]}, {0: [0, 5, 9], 1: list(range(0, 256, 2))}
    _mask_model(model, heads, neurons)
    x = torch.randint(0, 256, (3, 16))
    masked = model(x)
    for i, block in enumerate(model.blocks):
        remove_heads(block.attn, [h for h in range(4) if h not in heads[i]])
        remove_neurons(block.mlp, [j for j in range(256) if j not in neurons[i]])
    assert [b.attn.n_head for b in model.blocks] == [2, 3]
    assert model.blocks[0].attn.c_attn.weight.shape == (3 * 2 * 16, 64)
    assert model.blocks[1].mlp.c_fc.out_features == 128
    torch.testing.assert_close(model(x), masked, atol=1e-5, rtol=1e-5)


def test_a_masked_head_changes_the_output_and_an_untouched_one_is_kept_in_order():
    model = _random_gpt()
    x = torch.randint(0, 256, (2, 16))
    dense = model(x)
    attn = model.blocks[0].attn
    w = attn.c_attn.weight.detach().clone()
    remove_heads(attn, [0, 2, 3])
    # the kept heads' rows, in [q | k | v] order
    keep = torch.cat([torch.arange(h * 16, (h + 1) * 16) for h in (0, 2, 3)])
    assert torch.equal(attn.c_attn.weight, torch.cat([w[keep], w[keep + 64], w[keep + 128]]))
    assert not torch.allclose(model(x), dense, atol=1e-3)


def test_gpt_is_causal_and_predicts_every_position():
    model = _random_gpt()
    x = torch.randint(0, 256, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 256
    a, b = model(x), model(y)
    assert a.shape == (2, 16, 256)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16)])
def test_vit_tiny_classifies_both_embedded_image_sizes(shape):
    model = build_model("vit_tiny", shape, 10)
    assert model(torch.randn(5, *shape)).shape == (5, 10)
    assert model.config.image_size // model.config.patch == 4      # 16 tokens either way
    assert [b.attn.n_head for b in model.blocks] == [4] * 4


@pytest.mark.parametrize("model,dataset", [("gpt_tiny", "digits"), ("vit_tiny", "pydoc"),
                                           ("tiny_cnn", "pydoc")])
def test_a_model_on_the_other_modality_is_a_config_error(model, dataset):
    with pytest.raises(ConfigError, match="pick"):
        check(SessionConfig(model=model, dataset=dataset))


def test_pydoc_is_split_by_whole_topics_with_the_seed():
    topics = pydoc_topics()
    train, held = split_units(topics, 0.2, seed=3)
    assert sorted(train + held) == sorted(topics) and held and train
    assert 0.2 <= sum(map(len, held)) / sum(map(len, topics)) < 0.4
    assert split_units(topics, 0.2, seed=3) == (train, held)
    assert split_units(topics, 0.2, seed=4)[1] != held
    data = load_text("pydoc", 0.2, seed=3)
    heldout = "\n\n".join(held).encode()
    for w in data.test_x[:20]:       # held-out windows are held-out text
        assert bytes(w.tolist()) in heldout


def test_training_windows_are_seeded_and_targets_are_the_next_bytes():
    data = load_dataset("pydoc", seed=0)
    a = list(data.train_batches(1, 5, 4, torch.device("cpu")))
    b = list(data.train_batches(1, 5, 4, torch.device("cpu")))
    assert len(a) == data.steps_per_epoch(4)
    for (x, y), (x2, y2) in zip(a, b):
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert x.shape == y.shape == (4, CONTEXT)
        assert torch.equal(x[:, 1:], y[:, :-1])
    text = bytes(data.train_x.tolist())
    x, y = a[0]
    assert bytes(x[0].tolist()) + bytes([y[0, -1].item()]) in text


def _text(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return f"text:{p}"


@pytest.mark.parametrize("data,match", [
    (b"", "empty"), (b"  \n ", "empty"), (b"abc\x00def" * 100, "binary"),
    (b"caf\xe9 " * 100, "not UTF-8"), (b"short text", "shorter than two windows")])
def test_bad_text_is_one_clear_error(tmp_path, data, match):
    with pytest.raises(TextError, match=match):
        load_text(_text(tmp_path, "a.txt", data))


def test_missing_text_and_a_folder_without_txt_are_errors(tmp_path):
    with pytest.raises(TextError, match="does not exist"):
        load_text(f"text:{tmp_path / 'nope.txt'}")
    with pytest.raises(TextError, match="no .txt"):
        load_text(f"text:{tmp_path}")


def test_a_text_folder_is_split_by_whole_files(tmp_path):
    for i in range(6):
        (tmp_path / f"{i}.txt").write_text(f"file {i} " * 200)
    data = load_text(f"text:{tmp_path}", 0.3, seed=1)
    assert data.units[0] + data.units[1] == 6 and data.units[1] >= 1
    train = bytes(data.train_x.tolist()).decode()
    for w in data.test_x:
        assert bytes(w[:8].tolist()).decode() not in train


def test_cli_bad_text_exits_2_with_one_line(tmp_path, capsys):
    dataset = _text(tmp_path, "b.bin", b"\x00\x01\x02" * 100)
    assert main(["run", "--store", str(tmp_path / "s"), "--model", "gpt_tiny",
                 "--dataset", dataset]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:") and "binary" in err[0]


def test_cli_text_model_on_images_exits_2(tmp_path, capsys):
    assert main(["run", "--store", str(tmp_path / "s"), "--model", "gpt_tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gpt_tiny" in err[0] and "text" in err[0]


def test_language_model_loss_is_the_mean_next_token_cross_entropy():
    from pruneviz.metrics import evaluate

    data = load_dataset("pydoc")
    model = _random_gpt()
    model.wpe = torch.nn.Embedding(CONTEXT, 64)
    r = evaluate(model, data, torch.device("cpu"), limit=8)
    x, y = next(data.test_batches(torch.device("cpu"), limit=8))
    logits = model(x)
    assert r["loss"] == pytest.approx(F.cross_entropy(logits.flatten(0, 1), y.flatten()).item(),
                                      rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]), rel=1e-6)
    assert r["accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())


@pytest.mark.parametrize("model,dataset,method,word", [
    ("gpt_tiny", "digits", "l1", "**model** / **dataset**"),
    ("tiny_cnn", "pydoc", "l1", "**model** / **dataset**"),
    ("gpt_tiny", "text:/no/such/file.txt", "l1", "text:PATH")])
def test_the_form_says_inline_what_does_not_fit(model, dataset, method, word):
    from pruneviz.ui.forms import problems

    found = problems(SessionConfig(model=model, dataset=dataset, method=method))
    assert len(found) == 1 and word in found[0]


@pytest.mark.parametrize("method", ["gmp", "pgmpf", "pgp"])
def test_a_text_run_has_no_form_problem(method):
    from pruneviz.ui.forms import problems

    assert problems(SessionConfig(model="gpt_tiny", dataset="pydoc", method=method)) == []


def test_a_structures_score_is_the_l2_norm_over_all_its_weights():
    from pruneviz.transformers import structure_scores

    model = _random_gpt()
    scores = {(n, k): s for n, k, s in structure_scores(model)}
    attn, mlp = model.blocks[1].attn, model.blocks[1].mlp
    h = 2
    parts = [attn.c_attn.weight[head_rows(attn, h)], attn.c_attn.bias[head_rows(attn, h)],
             attn.c_proj.weight[:, head_cols(attn, h)]]
    expect = torch.cat([p.flatten() for p in parts]).norm()
    assert scores[("blocks.1.attn", "head")][h].item() == pytest.approx(expect.item(), rel=1e-5)
    j = 7
    expect = torch.cat([mlp.c_fc.weight[j], mlp.c_fc.bias[j:j + 1], mlp.c_proj.weight[:, j]]).norm()
    assert scores[("blocks.1.mlp", "neuron")][j].item() == pytest.approx(expect.item(), rel=1e-5)


def test_compact_removes_the_masked_heads_and_neurons_and_keeps_the_outputs():
    from pruneviz.masks import apply_masks, filter_mask
    from pruneviz.surgery import compact
    from pruneviz.transformers import structure_param_masks, structure_scores

    model = _random_gpt()
    for name, kind, s in structure_scores(model):
        apply_masks(model, structure_param_masks(model, name, kind, filter_mask(s, s.numel() // 2)))
    small, report = compact(model, (16,))      # raises if the outputs differ
    assert (report["heads_removed"], report["neurons_removed"]) == (2 * 2, 2 * 128)
    assert [b.attn.n_head for b in small.blocks] == [2, 2]
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
