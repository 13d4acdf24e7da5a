"""Runner, resume after interruption, determinism, tables, figures and the CLI, at tiny sizes."""

import json
import os
import textwrap

import pytest

from qlora_np.experiments import runner as R
from qlora_np.experiments.report import suite_tables
from qlora_np.experiments.store import ResultStore


def test_suite_runs_every_method_and_records_what_the_issue_asks(tmp_path, tiny_suite):
    store, plan, done = R.run_suite(tiny_suite, str(tmp_path), progress=False)
    assert done == len(plan) == 6
    recs = R.suite_records(store, tiny_suite)
    for r in recs:
        for key in ("task", "method", "seed", "trainable_params", "final_test_mse",
                    "train_curve", "test_curve", "mean_abs_dlog_last25", "n_spikes",
                    "wall_time_s", "config_hash"):
            assert key in r, key
        assert len(r["train_curve"]) == tiny_suite.steps
    params = {r["method"]: r["trainable_params"] for r in recs}
    assert params["lora_matched"] >= params["qlora"] > params["lora"]   # SPEC §7
    q = next(r for r in recs if r["method"] == "qlora")
    assert len(q["atom_usage"]) == 3 and sum(q["atom_usage"][0]) == pytest.approx(1.0)


def test_interrupted_suite_resumes_and_gives_the_same_numbers(tmp_path, tiny_suite, monkeypatch):
    full = str(tmp_path / "full")
    R.run_suite(tiny_suite, full, progress=False)
    reference = json.load(open(os.path.join(full, "results.json")))["runs"]

    # Interrupt (Ctrl-C) during the third run: two records must survive.
    calls = {"n": 0}
    real = R.run_single

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(R, "run_single", flaky)
    part = str(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        R.run_suite(tiny_suite, part, progress=False)
    assert len(ResultStore(part)) == 2
    monkeypatch.setattr(R, "run_single", real)
    store, plan, done = R.run_suite(tiny_suite, part, progress=False)
    assert done == 4 and len(store) == 6
    # Same seed, same numbers, bit for bit; a third call does nothing; same table.
    by_key = {(r["task"], r["method"], r["seed"]): r for r in store.records}
    for r in reference:
        other = by_key[(r["task"], r["method"], r["seed"])]
        assert other["final_test_mse"] == r["final_test_mse"]
        assert other["train_curve"] == r["train_curve"]
    table = suite_tables(R.suite_records(store, tiny_suite), tiny_suite)
    store, _, done = R.run_suite(tiny_suite, part, progress=False)
    assert done == 0
    assert suite_tables(R.suite_records(store, tiny_suite), tiny_suite) == table


def test_changing_a_setting_makes_new_runs(tmp_path, tiny_suite):
    R.run_suite(tiny_suite, str(tmp_path), progress=False)
    _, _, done = R.run_suite(R.replace(tiny_suite, steps=7), str(tmp_path), progress=False)
    assert done == 6


def test_two_workers_give_the_same_numbers_as_one(tmp_path, tiny_suite):
    a, _, _ = R.run_suite(tiny_suite, str(tmp_path / "a"), jobs=1, progress=False)
    b, _, _ = R.run_suite(tiny_suite, str(tmp_path / "b"), jobs=2, progress=False)
    fa = {(r["method"], r["seed"]): r["final_test_mse"] for r in a.records}
    fb = {(r["method"], r["seed"]): r["final_test_mse"] for r in b.records}
    assert fa == fb


def test_figures_are_written(tmp_path, tiny_suite):
    from qlora_np.experiments.figures import write_figures
    store, _, _ = R.run_suite(tiny_suite, str(tmp_path), progress=False)
    files = write_figures(R.suite_records(store, tiny_suite), tiny_suite, str(tmp_path / "fig"))
    names = sorted(os.path.basename(f) for f in files)
    assert names == ["atoms_tiny.png", "curves_tiny.png", "entropy_tiny.png", "fit_tiny.png"]
    assert all(os.path.getsize(f) > 1000 for f in files)


TASK_FILE = '''
import numpy as np

def make_task(seed):
    rng = np.random.default_rng(seed)
    x_pre, x_tr, x_te = (rng.uniform(-1, 1, (n, 1)) for n in (50, 30, 20))
    tgt = lambda x: np.sin(3 * x) + 0.3 * (x > 0)
    return {"x_pretrain": x_pre, "y_pretrain": np.sin(3 * x_pre),
            "x_train": x_tr, "y_train": tgt(x_tr), "x_test": x_te, "y_test": tgt(x_te)}
'''


def test_cli_runs_a_user_task_and_resumes(tmp_path, capsys, monkeypatch):
    from qlora_np.experiments import cli, presets
    # Shrink the base network and pretraining so that the test stays fast.
    real = presets.default_suite
    monkeypatch.setitem(presets.PRESETS, "default",
                        lambda: R.replace(real(), hidden=(5, 5), pretrain_steps=10))
    path = tmp_path / "mytask.py"
    path.write_text(textwrap.dedent(TASK_FILE))
    out = str(tmp_path / "out")
    argv = ["--task", f"{path}:make_task", "--seeds", "1", "--steps", "3", "--out", out,
            "--no-figures", "--jobs", "1"]
    assert cli.main(argv) == 0
    text = capsys.readouterr()
    assert "| qlora |" in text.out and "| lora_matched |" in text.out
    md = open(os.path.join(out, "results.md")).read()
    assert "--task" in md and "mytask.make_task" in md
    assert cli.main(argv) == 0
    assert "0 to run" in capsys.readouterr().err
    assert open(os.path.join(out, "results.md")).read() == md


def test_cli_reports_task_errors_cleanly(tmp_path, capsys):
    from qlora_np.experiments import cli
    assert cli.main(["--task", str(tmp_path / "missing.py") + ":f", "--out",
                     str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--seeds", "0"])
    assert "--seeds: expected a positive integer" in capsys.readouterr().err


def test_presets_meet_the_protocol():
    from qlora_np.experiments.presets import default_suite, paper_suite
    d, p = default_suite(), paper_suite()
    assert len(d.seeds) >= 5 and len(p.seeds) == 10
    kinds = {t.kind for t in d.tasks}
    assert kinds == {"single", "instruction", "continual"}
    methods = {m for t in p.tasks for m in t.methods}
    assert {"lora", "lora_matched", "qlora", "qlora_nosummary", "qlora_n1", "qlora_prior",
            "qlora_prior_shuffled", "qlora_prior_random", "lora_per_task"} <= methods
    assert {"qlora_dense", "qlora_top2"} & methods
    assert len({t.label for t in p.tasks}) == len(p.tasks)


def test_instruction_and_continual_settings_run_at_tiny_sizes(tmp_path):
    from qlora_np.experiments.presets import (
        CONTINUAL,
        INSTRUCTION_FULL,
        QLORA,
        builtin_task,
    )
    tasks = (builtin_task("instruct", INSTRUCTION_FULL, label="instruct", n_per_task=4,
                          n_test_per_task=3, n_pretrain=30),
             builtin_task("continual", CONTINUAL, label="continual", n_train_per_stage=8,
                          n_test_per_stage=5, n_pretrain=30))
    suite = R.Suite(tasks=tasks, seeds=(0,), steps=4, stage_steps=3, hidden=(5, 5),
                    qlora=dict(QLORA, n_atoms=3, d_key=4), d_instruction=8, pretrain_steps=5,
                    eval_points=2)
    store, plan, done = R.run_suite(suite, str(tmp_path), progress=False)
    by = {(r["task"], r["method"]): r for r in store.records}
    assert done == len(plan) == len(INSTRUCTION_FULL) + len(CONTINUAL)
    oracle = by[("instruct", "lora_per_task")]
    assert oracle["n_adapters"] == 9 and oracle["split_mse"]["test_heldout"] is None
    assert oracle["trainable_params"] == 9 * by[("instruct", "lora")]["trainable_params"]
    prior = by[("instruct", "qlora_prior")]
    assert set(prior["split_mse"]) == {"test", "test_paraphrase", "test_heldout"}
    assert len(prior["atom_usage_by_task"]) == 12     # 9 training tasks + 3 held out
    assert (by[("instruct", "lora_matched")]["trainable_params"]
            >= prior["trainable_params"])           # matched to the prior-carrying adapter
    c = by[("continual", "qlora")]
    assert len(c["stage_mse"]) == 3 and len(c["forgetting"]) == 2 and c["n_steps"] == 9
    assert c["forgetting"][0] == c["stage_mse"][2][0] - c["stage_mse"][0][0]
    from qlora_np.experiments.figures import write_figures
    names = {os.path.basename(f) for f in write_figures(R.suite_records(store, suite), suite,
                                                         str(tmp_path / "fig"))}
    assert {"forgetting_continual.png", "atoms_by_stage_continual.png",
            "atoms_by_task_instruct.png", "entropy_instruct.png"} <= names


def test_instruction_modes():
    import numpy as np

    from qlora_np.experiments.methods import instruction_texts
    splits = {"train": ["a b", "c d", "a b"], "test": ["a b", "e f"]}
    rng = np.random.default_rng(0)
    assert instruction_texts("true", splits, rng) == splits
    shuf = instruction_texts("shuffled", splits, rng)
    assert sorted(shuf["train"]) == sorted(splits["train"])
    rnd = instruction_texts("random", splits, rng)
    assert rnd["train"][0] == rnd["train"][2] == rnd["test"][0] != "a b"   # same text, same code
    assert len(rnd["test"][1]) == 3
    import pytest as _p
    with _p.raises(ValueError, match="instructions: expected"):
        instruction_texts("noisy", splits, rng)


@pytest.mark.slow
def test_default_suite_meets_its_budget_and_writes_every_output(tmp_path):
    """The issue's budget: the default suite in <= 90 s wall on 2 cores (run with -m slow)."""
    import time
    from qlora_np.experiments import cli
    start = time.perf_counter()
    assert cli.main(["--out", str(tmp_path)]) == 0
    wall = time.perf_counter() - start
    files = set(os.listdir(tmp_path))
    assert {"results.json", "results.md", "fit_wave1d.png", "forgetting_continual.png",
            "atoms_by_task_instruct.png", "entropy_wave1d.png", "atoms_wave1d.png"} <= files
    assert len(json.load(open(tmp_path / "results.json"))["runs"]) == 80
    assert wall <= 90, f"default suite took {wall:.1f} s"
