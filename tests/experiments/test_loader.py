"""`--task FILE.py:FUNC`: a task file written from the docs loads; every mistake gets a clear error."""

import textwrap

import numpy as np
import pytest

from qlora_np.experiments.loader import (
    TaskError,
    call_task,
    load_task,
    validate_task_data,
)

GOOD = '''
import numpy as np

def make_task(seed):
    rng = np.random.default_rng(seed)
    x_pre = rng.uniform(-1, 1, (200, 2))
    x_tr = rng.uniform(-1, 1, (100, 2))
    x_te = rng.uniform(-1, 1, (50, 2))
    f_src = lambda x: np.sin(2 * x[:, 0]) + x[:, 1]
    f_tgt = lambda x: np.sin(2 * x[:, 0] + (x[:, 1] > 0)) + x[:, 1]
    return {"x_pretrain": x_pre, "y_pretrain": f_src(x_pre),
            "x_train": x_tr, "y_train": f_tgt(x_tr) + 0.1 * rng.standard_normal(100),
            "x_test": x_te, "y_test": f_tgt(x_te)}
'''


def write(tmp_path, body, name="task_file.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def good_data(n=10):
    rng = np.random.default_rng(0)
    return {"x_pretrain": rng.normal(size=(20, 2)), "y_pretrain": rng.normal(size=(20, 1)),
            "x_train": rng.normal(size=(n, 2)), "y_train": rng.normal(size=(n, 1)),
            "x_test": rng.normal(size=(5, 2)), "y_test": rng.normal(size=(5, 1))}


def test_a_task_file_written_from_the_docs_loads(tmp_path):
    fn, desc = load_task(write(tmp_path, GOOD) + ":make_task")
    data = call_task(fn, 0)
    assert data["y_train"].shape == (100, 1)       # 1-D y is read as a column
    assert desc["name"] == "task_file.make_task" and len(desc["file_sha256"]) == 12


def test_missing_file(tmp_path):
    with pytest.raises(TaskError, match=r"task file '.*nope\.py' not found"):
        load_task(str(tmp_path / "nope.py") + ":make_task")


def test_missing_function_lists_the_functions_there(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(TaskError, match=r"has no function 'make' \(functions defined there: "
                                        r"make_task\)"):
        load_task(path + ":make")


def test_bad_spec_and_import_error(tmp_path):
    with pytest.raises(TaskError, match="expected FILE.py:FUNC"):
        load_task("task_file.py")
    with pytest.raises(TaskError, match="importing .* failed: ZeroDivisionError"):
        load_task(write(tmp_path, "x = 1 / 0\n", "broken.py") + ":f")


def test_wrong_keys_are_named():
    data = good_data()
    data["x_trian"] = data.pop("x_train")
    with pytest.raises(TaskError, match=r"missing key\(s\) \['x_train'\]"):
        validate_task_data(data)
    with pytest.raises(TaskError, match="must return a dict"):
        validate_task_data([1, 2])


@pytest.mark.parametrize("key,value,message", [
    ("y_train", np.zeros((7, 1)), "'x_train' has 10 rows but 'y_train' has 7"),
    ("x_test", np.zeros((5, 3)), "'x_test' has 3 input columns but 'x_pretrain' has 2"),
    ("y_test", np.zeros((5, 2)), "'y_test' has 2 output columns but 'y_pretrain' has 1"),
    ("x_train", np.zeros((10, 2, 1)), r"'x_train' must have shape \(n, d\) or \(n,\), got "
                                      r"shape \(10, 2, 1\)"),
    ("x_train", [[0.0, 1.0]] * 10, "'x_train' must be a NumPy array, got list"),
    ("y_pretrain", np.full((20, 1), np.nan), "'y_pretrain' contains NaN"),
    ("x_test", np.array([["a", "b"]] * 5), "'x_test' must hold real numbers"),
])
def test_wrong_shapes_and_types_are_named(key, value, message):
    data = good_data()
    data[key] = value
    with pytest.raises(TaskError, match=message):
        validate_task_data(data)


def test_instruction_lists_are_checked():
    data = good_data()
    data["instructions_train"] = ["do x"] * 10
    with pytest.raises(TaskError, match="'instructions_train' is given but 'instructions_test'"):
        validate_task_data(data)
    data["instructions_test"] = ["do x"] * 4
    with pytest.raises(TaskError, match="'instructions_test' has 4 strings but 'x_test' has 5"):
        validate_task_data(data)
    data["instructions_test"] = ["do x"] * 4 + [3]
    with pytest.raises(TaskError, match="must be a list of strings"):
        validate_task_data(data)


def test_a_failing_task_function_is_reported_with_its_seed(tmp_path):
    fn, _ = load_task(write(tmp_path, "def f(seed):\n    raise KeyError('oops')\n") + ":f")
    with pytest.raises(TaskError, match="seed=3 raised KeyError"):
        call_task(fn, 3)


def test_the_example_in_the_docs_is_a_valid_task(tmp_path):
    import os
    import re
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "experiments.md")
    code = re.search(r"```python\n(.*?)```", open(doc, encoding="utf-8").read(), re.DOTALL).group(1)
    path = tmp_path / "my_task.py"
    path.write_text(code)
    fn, _ = load_task(f"{path}:make_task")
    data = call_task(fn, 0)
    assert data["x_train"].shape == (500, 2) and data["y_test"].shape == (500, 1)
