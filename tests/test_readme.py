"""The README's example runs as written."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_example_runs(capsys):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README example", "exec"), {})
    out = capsys.readouterr().out
    first, last = map(float, re.search(r"train MSE ([\d.]+) -> ([\d.]+)", out).groups())
    assert last < first


def test_readme_commands_are_the_ci_commands():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    test_command = re.search(r"Run the tests.*?```bash\n(.*?)\n```", readme, re.S).group(1)
    assert test_command in ci
