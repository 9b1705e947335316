"""The buyer guide (docs/guides/buyer.md) runs as written: each Python block prints the text block
that follows it, and the registry walk-through's commands print what the guide shows, against
the registry that `make run` starts (`sqm serve --seed`, SQLite) on a free port."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.registry.servers import first_answer, free_port

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guides" / "buyer.md"
WALK_THROUGH = "## Ask the registry"
GUIDE_REGISTRY = "http://127.0.0.1:8080"  # where the guide says `make run` serves
# What differs from run to run: the instant a checkpoint was stamped.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?")


@dataclass
class Block:
    language: str
    text: str
    line: int  # where the block starts in the guide, for the failure message


def _blocks(markdown: str) -> list[Block]:
    found = []
    for match in re.finditer(r"^```(\w+)\n(.*?)^```$", markdown, re.S | re.M):
        found.append(Block(match[1], match[2], markdown.count("\n", 0, match.start()) + 1))
    return found


def _normal(text: str) -> list[str]:
    return [_INSTANT.sub("<instant>", line.rstrip()) for line in text.strip("\n").splitlines()]


def _matches(expected: list[str], got: list[str]) -> bool:
    """``got`` line by line, where a line "..." in ``expected`` stands for any lines."""
    if not expected:
        return not got
    if expected[0] == "...":
        return any(_matches(expected[1:], got[n:]) for n in range(len(got) + 1))
    return bool(got) and expected[0] == got[0] and _matches(expected[1:], got[1:])


def _python_cases() -> list[tuple[Block, Block]]:
    blocks = _blocks(GUIDE.read_text(encoding="utf-8"))
    return [
        (code, shown)
        for code, shown in itertools.pairwise(blocks)
        if code.language == "python" and shown.language == "text"
    ]


def _commands(console: str) -> list[tuple[str, list[str]]]:
    """(command, the lines it prints) of a console block; a trailing backslash continues."""
    steps: list[tuple[str, list[str]]] = []
    lines = console.strip("\n").splitlines()
    n = 0
    while n < len(lines):
        line = lines[n]
        assert line.startswith("$ "), f"console line without a prompt: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            n += 1
            command = command[:-1] + " " + lines[n].strip()
        n += 1
        shown = []
        while n < len(lines) and not lines[n].startswith("$ "):
            shown.append(lines[n])
            n += 1
        steps.append((command, shown))
    return steps


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The registry as `make run` starts it (`sqm serve --data DIR --seed`), on a free port."""
    data = tmp_path_factory.mktemp("registry")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "sqm"), "serve", "--data", str(data), "--seed",
         "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        first_answer(server, base + "/api/v1/log/checkpoint")
        yield base
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
        if server.poll() is None:
            server.kill()


@pytest.mark.parametrize(("code", "shown"), _python_cases(), ids=lambda block: f"line{block.line}")
def test_a_python_example_prints_what_the_guide_shows(
    code: Block, shown: Block, made_run: str, tmp_path: Path
) -> None:
    walk_through = GUIDE.read_text(encoding="utf-8").index(WALK_THROUGH)
    in_walk_through = GUIDE.read_text(encoding="utf-8").count("\n", 0, walk_through) < code.line
    source = code.text
    if in_walk_through:
        # The walk-through reads the trust root the console step saved in the working folder.
        _run_console(made_run, tmp_path, upto="sqm trust-root")
        source = source.replace(GUIDE_REGISTRY, made_run)
    result = subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path if in_walk_through else ROOT,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _matches(_normal(shown.text), _normal(result.stdout)), (
        f"the block at line {code.line} printed:\n{result.stdout}\nthe guide shows:\n{shown.text}"
    )


def _run_console(base: str, folder: Path, upto: str | None = None) -> list[str]:
    """Run the walk-through's console steps in ``folder`` (all, or up to the one that starts
    with ``upto``); a description of each step whose output differs from the guide's."""
    markdown = GUIDE.read_text(encoding="utf-8")
    start = markdown.count("\n", 0, markdown.index(WALK_THROUGH))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    differences = []
    for block in _blocks(markdown):
        if block.language != "console" or block.line < start:
            continue
        for command, shown in _commands(block.text):
            if command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                env[name] = base if value == GUIDE_REGISTRY else value
                continue
            result = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=env,
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            printed = result.stdout + result.stderr
            if result.returncode != 0 or not _matches(_normal("\n".join(shown)), _normal(printed)):
                differences.append(
                    f"$ {command}\n(exit {result.returncode}) printed:\n{printed}\n"
                    f"the guide shows:\n" + "\n".join(shown)
                )
            if upto is not None and command.startswith(upto):
                return differences
    return differences


def test_the_walk_through_s_commands_print_what_the_guide_shows(
    made_run: str, tmp_path: Path
) -> None:
    differences = _run_console(made_run, tmp_path)
    assert not differences, "\n\n".join(differences)
    # What the steps saved is what the later ones read: the pinned root and a verified bundle.
    assert (tmp_path / "trust-root.json").stat().st_size > 0
    assert '"envelope"' in (tmp_path / "kraftwerk.bundle.json").read_text(encoding="utf-8")


def test_the_guide_is_read_as_it_is_written() -> None:
    # The parsing above sees every example: four Python blocks before the walk-through and one
    # in it, and the walk-through's six commands besides the export.
    assert len(_python_cases()) == 5
    markdown = GUIDE.read_text(encoding="utf-8")
    start = markdown.count("\n", 0, markdown.index(WALK_THROUGH))
    commands = [
        command
        for block in _blocks(markdown)
        if block.language == "console" and block.line >= start
        for command, _ in _commands(block.text)
    ]
    assert [shlex.split(c)[0] for c in commands] == [
        "export", "sqm", "sqm", "sqm", "curl", "sqm", "sqm",
    ]  # fmt: skip
