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


def _others(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(".alpha")}


def _one_step(mult):
    """(how far each alpha moved, every other parameter after the step) for one AdamW step at lr 1e-2."""
    model = _model()
    opt, schedule = make_optimizer(model, TrainArgs(lr=1e-2, warmup_steps=0, alpha_lr_mult=mult))
    before = _alphas(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    model(ids).float().square().mean().backward()
    opt.step()
    return (_alphas(model) - before).abs(), _others(model)


def test_alpha_moves_by_its_own_learning_rate():
    """Adam's first step moves each parameter by about its lr, so the alphas move 10x as far with mult 10 and
    the other parameters do not notice."""
    (plain, plain_rest), (fast, fast_rest) = _one_step(1.0), _one_step(10.0)
    assert plain.min() > 0, "every alpha gets a gradient in this model"
    torch.testing.assert_close(plain, torch.full_like(plain, 1e-2), rtol=0.02, atol=0)
    torch.testing.assert_close(fast, torch.full_like(fast, 1e-1), rtol=0.02, atol=0)
    assert plain_rest.keys() == fast_rest.keys() and len(plain_rest) > 10
    for name in plain_rest:
        assert torch.equal(plain_rest[name], fast_rest[name]), name


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


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "2", 10**400])
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


def test_a_sweep_run_trains_with_its_multiplier(tmp_path):
    """The sweep passes the key to the training (the alphas move further) and records it; 1.0 is the plain run."""
    from safetensors.torch import load_file
    from ramnet.sweep_run import run as run_one

    moved = {}
    for mult in (1, 30):
        entry = {"label": f"r{mult}", "model": "ramnet", "preset": "tiny", "alpha_lr_mult": mult, "save_model": True}
        spec = check_spec({**_spec(tmp_path, entry), "batch_size": 4, "num_train": 8, "num_eval": 4,
                           "eval_every": 2, "precision": "fp32", "device": "cpu", "warmup_steps": 0})
        (run,) = expand(spec)
        assert ("alpha_lr_mult" in run) == (mult != 1)  # an explicit 1.0 is the run without the key
        out = tmp_path / f"run{mult}"
        out.mkdir()
        result = run_one(run, out_dir=out)
        assert result.get("alpha_lr_mult", 1.0) == mult and result["steps"] == 2
        weights = load_file(str(next((out / "model").glob("*.safetensors"))))
        moved[mult] = torch.cat([v.flatten() for k, v in weights.items() if k.endswith(".alpha")]).abs()
    assert moved[1].max() < 3e-3 < moved[30].min()  # two steps at lr 1e-3: about 2e-3 against about 6e-2


def test_a_checkpoint_from_before_the_key_resumes_as_1(tmp_path, capsys):
    """A training checkpoint whose arguments lack alpha_lr_mult was trained at 1.0: a plain resume runs, another
    value is refused; a run at 10 resumes with its own value and ends with the uninterrupted run's weights."""
    from tests.model.test_cli import TINY
    from ramnet.checkpoint import load_checkpoint

    full, part = tmp_path / "full", tmp_path / "part"
    flags = [*TINY, "--steps", "4", "--save-every", "2", "--alpha-lr-mult", "10"]
    assert main(["train", *flags, "--out", str(full)]) == 0
    step2 = full / "checkpoints" / "step-00000002"
    assert main(["train", "--device", "cpu", "--resume", str(step2), "--out", str(part)]) == 0
    a, b = load_checkpoint(full).state_dict(), load_checkpoint(part).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state_file = step2 / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["train"].pop("alpha_lr_mult") == 10.0
    state_file.write_text(json.dumps(state))  # as written before the key existed
    capsys.readouterr()
    assert main(["train", "--device", "cpu", "--resume", str(step2), "--out", str(tmp_path / "x"),
                 "--alpha-lr-mult", "10"]) == 2
    assert "--alpha-lr-mult 10.0 (checkpoint: 1.0)" in capsys.readouterr().err


def test_the_cli_flag_is_an_mqar_flag(capsys):
    assert main(["train", "--task", "lm", "--alpha-lr-mult", "2"]) == 2
    err = capsys.readouterr().err
    assert "--alpha-lr-mult: MQAR flags" in err and "tokenizer" not in err
