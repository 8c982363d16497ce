"""Every harness command line in README.md is a tested command (issue 11 item 17).

Each ```sh block line that runs the harness (``harness``, ``.venv/bin/harness``,
``python -m harness``, or ``make run ... ARGS=...`` expanded by ``make -n``) must parse with
the real argument parser, its scenario must validate with its ``--set`` overrides, and a
``--baseline`` path must be one that an earlier command of the same block writes (the CI
example's plumbing). The synopsis block's options must exist.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from harness.cli import _parser, shorthand_overrides
from harness.runner.execute import LATEST
from harness.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _blocks(kind: str) -> list[list[str]]:
    """Lines of each fenced block whose info string is ``kind`` ("" for plain fences)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    inside: str | None = None  # the open block's info string
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), []
            else:
                if inside == kind:
                    blocks.append(current)
                inside = None
        elif inside is not None:
            current.append(line)
    return blocks


def _commands(block: list[str]) -> list[list[str]]:
    """Shell words of each command in a block (continuations joined, comments dropped, a line cut
    at its first control operator: ``harness run ... &`` is the harness command without ``&``)."""
    joined = "\n".join(block).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        cut = next((i for i, w in enumerate(words) if w in _CONTROL), len(words))
        if words[:cut]:
            commands.append(words[:cut])
    return commands


_CONTROL = {"&", "&&", ";", "|", "||", ";;", ">", ">>", "<"}  # operators and redirections


def _harness_argv(words: list[str]) -> list[str] | None:
    if not words:
        return None
    if words[0] in ("harness", ".venv/bin/harness", "$(VENV)/bin/harness"):
        return words[1:]
    if words[:3] == [".venv/bin/python", "-m", "harness"]:
        return words[3:]
    if words[:2] == ["make", "run"]:
        proc = subprocess.run(
            ["make", "-n", "-s", *words[1:]], cwd=REPO, capture_output=True, text=True,
            timeout=60, check=True,
        )  # fmt: skip
        line = [ln for ln in proc.stdout.splitlines() if "/bin/harness run" in ln][-1]
        return shlex.split(line)[1:]
    return None


EXAMPLES = [
    (i, argv)
    for i, block in enumerate(_blocks("sh"))
    for words in _commands(block)
    if (argv := _harness_argv(words)) is not None
]


def test_the_readme_has_harness_examples() -> None:
    commands = {argv[0] for _, argv in EXAMPLES}
    assert {"run"} <= commands and len(EXAMPLES) >= 4, EXAMPLES


@pytest.mark.parametrize(("block", "argv"), EXAMPLES, ids=[" ".join(a) for _, a in EXAMPLES])
def test_readme_command_parses_and_validates(block: int, argv: list[str]) -> None:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown option
        raise AssertionError(f"README command does not parse: harness {' '.join(argv)}") from exc
    if args.command in ("run", "validate"):
        overrides = [*shorthand_overrides(args, {}), *args.overrides]  # as the CLI applies them
        load_scenario(REPO / args.scenario, overrides, has_external_baseline=bool(args.baseline))
    if getattr(args, "baseline", None) is not None:
        written = _written_results(block, argv)
        assert args.baseline in written, (
            f"--baseline {args.baseline} is not written by an earlier command of the block "
            f"(they write {sorted(map(str, written))})"
        )


def _written_results(block: int, until: list[str]) -> set[Path]:
    """results.json paths written by the block's commands before ``until``."""
    out: set[Path] = set()
    for i, argv in EXAMPLES:
        if i != block:
            continue
        if argv is until:
            break
        args = _parser().parse_args(argv)
        if args.command == "run":
            if args.run_dir is not None:
                out.add(args.run_dir / "results.json")
            else:
                out.add((args.out or Path("reports")) / LATEST / "results.json")
    return out


def test_synopsis_options_exist() -> None:
    parser = _parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    synopsis = next(b for b in _blocks("") if b and b[0].startswith("harness run"))
    for line in synopsis:
        words = line.split()
        assert words[0] == "harness"
        if words[1] == "--version":
            assert "--version" in parser._option_string_actions
            continue
        known = subs.choices[words[1]]._option_string_actions
        for option in re.findall(r"--[a-z][a-z-]*", line):
            assert option in known, f"synopsis '{line}': {option} is not an option"


_WORKLOAD = (
    "sessions",
    "stages",
    "arrivals",
    "fps",
    "duration_s",
    "warmup_s",
    "ramp_up_s",
    "trace",
)


def _like_for_like(sc: object) -> None:
    """The baseline scenario a scenario runs first measures the same workload (issue 20 item 4:
    overrides never reached it, and unlike runs were judged)."""
    from harness.scenario import Scenario

    assert isinstance(sc, Scenario)
    if sc.baseline is None or not sc.baseline.scenario:
        return
    base = load_scenario(sc.baseline.scenario, sc.baseline.overrides)
    mine, theirs = sc.workload.model_dump(), base.workload.model_dump()
    differ = {k: (mine[k], theirs[k]) for k in _WORKLOAD if mine[k] != theirs[k]}
    assert not differ, f"{sc.name} vs its baseline scenario: {differ}"


@pytest.mark.parametrize(("block", "argv"), EXAMPLES, ids=[" ".join(a) for _, a in EXAMPLES])
def test_readme_runs_compare_like_for_like(block: int, argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    if args.command == "run" and args.baseline is None:
        overrides = [*shorthand_overrides(args, {}), *args.overrides]
        _like_for_like(load_scenario(REPO / args.scenario, overrides))


def test_readme_python_example_compares_like_for_like() -> None:
    import ast

    block = README.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    call = next(
        n
        for n in ast.walk(ast.parse(block))
        if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "load_scenario"
    )
    path, overrides = (ast.literal_eval(a) for a in call.args)
    assert overrides, "the example shows overrides: they must reach the baseline run too"
    _like_for_like(load_scenario(REPO / path, overrides))
