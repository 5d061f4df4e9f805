"""A separate learning rate for RAM-Net's per-head temperatures alpha (``alpha_lr_mult``): the optimizer group,
its effect on one step, the schedule, the errors, the sweep key and its fingerprint, and the CLI flag."""
import json

import pytest
import torch

from ramnet.baselines import build_model
from ramnet.cli import main
from ramnet.config import RamNetConfig
from ramnet.model import RamNetForCausalLM
from ramnet.sweep import check_spec, expand
from ramnet.train import TrainArgs, make_optimizer


def _model(seed=0):
    torch.manual_seed(seed)
    return RamNetForCausalLM(RamNetConfig.from_name("tiny"))


def _alphas(model):
    return torch.cat([p.detach().clone() for n, p in model.named_parameters() if n.endswith(".alpha")])


def _one_step(mult):
    model = _model()
    opt, schedule = make_optimizer(model, TrainArgs(lr=1e-2, warmup_steps=0, alpha_lr_mult=mult))
    before = _alphas(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    model(ids).float().square().mean().backward()
    opt.step()
    return (_alphas(model) - before).abs()


def test_alpha_moves_by_its_own_learning_rate():
    """Adam's first step moves each parameter by about its lr, so the alphas move 10x as far with mult 10 and
    the other parameters do not notice."""
    plain, fast = _one_step(1.0), _one_step(10.0)
    assert plain.min() > 0, "every alpha gets a gradient in this model"
    torch.testing.assert_close(plain, torch.full_like(plain, 1e-2), rtol=0.02, atol=0)
    torch.testing.assert_close(fast, torch.full_like(fast, 1e-1), rtol=0.02, atol=0)


def test_the_alpha_group_follows_the_schedule_and_the_default_keeps_two_groups():
    model = _model()
    opt, schedule = make_optimizer(model, TrainArgs(lr=1e-3, warmup_steps=10, alpha_lr_mult=5.0))
    assert len(opt.param_groups) == 3
    alpha_group = opt.param_groups[2]
    assert {id(p) for p in alpha_group["params"]} == {id(p) for n, p in model.named_parameters()
                                                      if n.endswith(".alpha")}
    assert alpha_group["weight_decay"] == 0.0
    for _ in range(3):
        opt.step()
        schedule.step()
    assert alpha_group["lr"] == pytest.approx(5 * opt.param_groups[0]["lr"]) and alpha_group["lr"] < 5e-3
    opt, _ = make_optimizer(model, TrainArgs(lr=1e-3))
    assert len(opt.param_groups) == 2  # checkpoints written before the key existed resume into the same groups
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "2"])
def test_alpha_lr_mult_must_be_a_positive_finite_number(bad):
    with pytest.raises(ValueError, match="--alpha-lr-mult must be a finite number > 0"):
        TrainArgs(alpha_lr_mult=bad)


def test_a_model_without_alpha_refuses_a_multiplier():
    model, _, _ = build_model({"model": "attention", "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}, 64, 32)
    with pytest.raises(ValueError, match="needs a model with alpha temperatures"):
        make_optimizer(model, TrainArgs(alpha_lr_mult=2.0))
    make_optimizer(model, TrainArgs())  # the default is fine for every model


def _spec(tmp_path, entry):
    return {"out": str(tmp_path / "o"), "steps": 2, "lrs": [1e-3], "settings": [[2, 16]], "vocab_size": 64,
            "models": [entry]}


def test_the_sweep_key_enters_the_fingerprint_only_when_given(tmp_path):
    plain = {"label": "r", "model": "ramnet", "preset": "tiny"}
    (run,) = expand(check_spec(_spec(tmp_path, plain)))
    (same,) = expand(check_spec(_spec(tmp_path, {**plain, "save_model": True})))
    (fast,) = expand(check_spec(_spec(tmp_path, {**plain, "alpha_lr_mult": 10})))
    assert "alpha_lr_mult" not in run and run["fingerprint"] == same["fingerprint"]
    assert fast["alpha_lr_mult"] == 10.0 and fast["fingerprint"] != run["fingerprint"]
    assert "alpha_lr_mult" not in fast["spec"]  # not a model key: build_model never sees it


@pytest.mark.parametrize("entry, message", [
    ({"label": "r", "model": "ramnet", "preset": "tiny", "alpha_lr_mult": 0}, "model r: alpha_lr_mult must be"),
    ({"label": "r", "model": "ramnet", "preset": "tiny", "alpha_lr_mult": "x"}, "model r: alpha_lr_mult must be"),
    ({"label": "a", "model": "attention", "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32,
      "alpha_lr_mult": 2}, "unknown key(s) ['alpha_lr_mult']"),
])
def test_bad_sweep_keys_get_one_line(tmp_path, capsys, entry, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec(tmp_path, entry)))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_sweep_run_records_its_multiplier(tmp_path):
    from ramnet.sweep_run import run as run_one

    entry = {"label": "r", "model": "ramnet", "preset": "tiny", "alpha_lr_mult": 3}
    spec = check_spec({**_spec(tmp_path, entry), "batch_size": 4, "num_train": 8, "num_eval": 4, "eval_every": 2,
                       "precision": "fp32", "device": "cpu"})
    result = run_one(expand(spec)[0])
    assert result["alpha_lr_mult"] == 3.0 and result["steps"] == 2


def test_the_cli_flag_is_an_mqar_flag(capsys):
    assert main(["train", "--task", "lm", "--alpha-lr-mult", "2"]) == 2
    assert "--alpha-lr-mult: MQAR flags" in capsys.readouterr().err
