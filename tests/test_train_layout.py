"""The training package stays readable in one sitting: no function in ``train/`` over 80
lines, and ``train()`` a flat loop (the paper's step, then bookkeeping) with one exit path."""

import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "src" / "pixeldance" / "train"
LIMIT = 80


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_train_is_longer_than_the_limit():
    lengths = {
        f"{p.name}:{f.name}": f.end_lineno - f.lineno + 1
        for p in sorted(TRAIN.glob("*.py"))
        for f in functions(p)
    }
    assert len(lengths) > 20  # the package was read
    too_long = {name: n for name, n in lengths.items() if n > LIMIT}
    assert not too_long, f"split these (over {LIMIT} lines): {too_long}"


def test_train_ends_the_run_in_one_place():
    (train,) = [f for f in functions(TRAIN / "loop.py") if f.name == "train"]
    calls = [
        n.func.attr
        for n in ast.walk(train)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    assert calls.count("end_training") == 1
    (outer,) = [n for n in train.body if isinstance(n, ast.Try)]
    assert any(
        isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "end_training"
        for s in outer.finalbody
        for n in ast.walk(s)
    )
    loop_src = (TRAIN / "loop.py").read_text() + (TRAIN / "run.py").read_text()
    assert loop_src.count("end_training(") == 1  # nowhere else in the loop's modules
