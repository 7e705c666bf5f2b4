"""The README's Python examples run as written (all but the one that needs a trained run folder)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    if "load_run(" in code:
        pytest.skip("needs a trained run folder (covered by tests/test_cli_eval.py)")
    namespace: dict = {}
    exec(compile("import torch, dendrix\n" + code.replace("    ...\n", "    break\n"), f"README block {index}", "exec"),
         namespace)
