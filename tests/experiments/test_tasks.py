"""The task generators: keys, shapes, seeding, input-dependent shift, noise, splits."""

import numpy as np
import pytest

from qlora_np.experiments import tasks as T
from qlora_np.experiments.loader import validate_task_data

SMALL = {"wave1d": {"n_train": 50, "n_pretrain": 60, "n_test": 40},
         "surface2d": {"n_train": 50, "n_pretrain": 60, "n_test": 40},
         "ridge5d": {"n_train": 50, "n_pretrain": 60, "n_test": 40},
         "instruct": {"n_per_task": 8, "n_pretrain": 60, "n_test_per_task": 5},
         "continual": {"n_train_per_stage": 20, "n_pretrain": 60, "n_test_per_stage": 10}}


@pytest.mark.parametrize("name", sorted(T.BUILTIN))
def test_builtin_tasks_pass_the_user_task_checks_and_are_seeded(name):
    a = T.BUILTIN[name](3, **SMALL[name])
    validate_task_data(a, name)   # the same contract as a user's task
    b = T.BUILTIN[name](3, **SMALL[name])
    c = T.BUILTIN[name](4, **SMALL[name])
    for k in T.REQUIRED_KEYS:
        assert a[k].dtype == np.float64 and a[k].ndim == 2
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x_train"], c["x_train"])
    assert np.all(np.abs(a["x_train"]) <= 1)


def test_input_dimensions_and_noise_levels_differ():
    dims = {n: T.BUILTIN[n](0, **SMALL[n])["x_train"].shape[1]
            for n in ("wave1d", "surface2d", "ridge5d")}
    assert dims == {"wave1d": 1, "surface2d": 2, "ridge5d": 5}
    # Noise: residual std of the training targets around the clean target.
    res = {}
    for name, target in (("wave1d", T.wave1d_target), ("ridge5d", T.ridge5d_target)):
        d = T.BUILTIN[name](0, n_train=4000)
        res[name] = float(np.std(d["y_train"] - target(d["x_train"])))
    assert abs(res["wave1d"] - 0.15) < 0.01 and abs(res["ridge5d"] - 0.3) < 0.02


def test_surface2d_noise_is_heteroscedastic():
    d = T.surface2d(0, n_train=6000)
    r = d["y_train"] - T.surface2d_target(d["x_train"])
    low, high = d["x_train"][:, 0] < -0.5, d["x_train"][:, 0] > 0.5
    assert np.std(r[high]) > 4 * np.std(r[low])


@pytest.mark.parametrize("source,target,dim", [
    (T.wave1d_source, T.wave1d_target, 1), (T.surface2d_source, T.surface2d_target, 2),
    (T.ridge5d_source, T.ridge5d_target, 5)])
def test_source_and_target_differ_in_an_input_dependent_way(source, target, dim):
    x = np.random.default_rng(0).uniform(-1, 1, (4000, dim))
    diff = target(x) - source(x)
    left, right = x[:, 0] < -0.3, x[:, 0] > 0.3
    # Not a constant offset or a global rescaling: the change differs between regions.
    assert abs(np.mean(diff[left] ** 2) - np.mean(diff[right] ** 2)) > 0.01
    assert np.mean(diff ** 2) > 0.02


def test_instruction_family_and_splits():
    assert len(T.INSTRUCT_TASKS) >= 8 and len(T.TRAIN_TASKS) >= 8
    assert not set(T.HELD_OUT_TASKS) & set(T.TRAIN_TASKS)
    for i in range(3):   # every parameter value of a held-out task appears in training
        assert {t[i] for t in T.HELD_OUT_TASKS} <= {t[i] for t in T.TRAIN_TASKS}
    targets = [T.instruct_target(np.linspace(-1, 1, 50)[:, None], t) for t in T.INSTRUCT_TASKS]
    assert all(not np.allclose(a, b) for i, a in enumerate(targets) for b in targets[i + 1:])
    d = T.instruct(0, **SMALL["instruct"])
    train_texts, para_texts = set(d["instructions_train"]), set(d["instructions_test_paraphrase"])
    assert not train_texts & para_texts          # held-out paraphrases are unseen
    assert set(d["task_ids_train"]) == {T.INSTRUCT_TASKS.index(t) for t in T.TRAIN_TASKS}
    assert set(d["task_ids_test_heldout"]) == {T.INSTRUCT_TASKS.index(t)
                                               for t in T.HELD_OUT_TASKS}
    for task in T.INSTRUCT_TASKS:   # several distinct paraphrases per task
        assert len({T.instruction_text(task, j) for j in range(6)}) == 6
    # Instructions are generated from the parameters: the numbers and sides appear in them.
    assert "0.8" in T.instruction_text(("left", "phase", 1), 0)
    assert "below 0.3" in T.instruction_text(("left", "phase", 1), 0)
    for split in ("train", "test", "test_paraphrase", "test_heldout"):
        assert len(d[f"instructions_{split}"]) == len(d[f"x_{split}"]) == len(d[f"y_{split}"])


def test_continual_stages_cover_their_regions_in_order():
    d = T.continual(0, **SMALL["continual"])
    assert len(d["stages"]) == 3
    for (lo, hi), st in zip(T.CONTINUAL_REGIONS, d["stages"]):
        assert np.all((st["x_train"] >= lo) & (st["x_train"] <= hi))
        np.testing.assert_array_equal(st["y_test"], T.continual_target(st["x_test"]))


def test_bad_task_parameters_name_the_parameter():
    with pytest.raises(ValueError, match="n_train"):
        T.wave1d(0, n_train=0)
    with pytest.raises(ValueError, match="noise"):
        T.ridge5d(0, noise=-1.0)
    with pytest.raises(ValueError, match="task: expected one of"):
        T.make_task("nope")
