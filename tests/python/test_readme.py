"""The README's set-up and quick-start commands work when followed literally (issue 12, item 11).

README.md marks each block a reader is told to run with an HTML comment on the line before its
fence (invisible on GitHub):

- `<!-- readme-test: serve -->`: the set-up command that starts the broker;
- `<!-- readme-test: install -->`: what to install; never run here, but it must name every tool
  and Python client the run blocks use;
- `<!-- readme-test: run -->`: the quick-start and admin examples, run in document order
  against one broker.

Blocks run as written, from one fresh temporary working directory: shell blocks with bash
(errexit, pipefail), Python blocks with this interpreter. `corelog` on PATH is the binary under
test ($CORELOG_BIN), and `cargo` is a stand-in that runs `cargo run --release -- ARGS` as that
binary with ARGS (the test builds nothing). The README uses the default address
127.0.0.1:9092, so these tests need that port and skip, saying so, when it is taken.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from corelog_broker import READY_TIMEOUT_S, REPO_ROOT, STOP_TIMEOUT_S, api_versions_v0, corelog_bin

README = REPO_ROOT / "README.md"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
BLOCK_TIMEOUT_S = 120
MARKER = re.compile(
    r"<!-- readme-test: (serve|install|run|security-setup|security-serve|security-run) -->")
# Sections whose every block is an example a reader runs, so each must carry a marker.
RUNNABLE_SECTIONS = ("Quick start", "Admin", "Security")
# Python distributions the README tells readers to install, by the module they import.
DISTRIBUTIONS = {"confluent_kafka": "confluent-kafka", "kafka": "kafka-python"}
SHELL_BUILTINS = {"cd", "echo", "export", "printf", "set", "source", "."}


@dataclass
class Block:
    marker: str | None
    language: str
    text: str
    section: str
    line: int

    def where(self) -> str:
        return f"README.md:{self.line} ({self.section}, {self.language})"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md with its marker (None if unmarked) and section."""
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("```"):
            marker = MARKER.fullmatch(lines[i - 1].strip()) if i > 0 else None
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            assert end is not None, f"README.md:{i + 1}: unclosed code block"
            blocks.append(Block(marker and marker.group(1), line[3:].strip(),
                                "\n".join(lines[i + 1:end]) + "\n", section, i + 1))
            i = end
        i += 1
    return blocks


def marked(kind: str) -> list[Block]:
    return [b for b in readme_blocks() if b.marker == kind]


def shell_commands(block: Block) -> set[str]:
    """The programs a shell block runs: the first word of every pipeline stage."""
    programs = set()
    for line in block.text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for stage in re.split(r"\|\||&&|[|;]", line):
            words = shlex.split(stage)
            if words and words[0] not in SHELL_BUILTINS:
                programs.add(words[0])
    return programs


def python_imports(block: Block) -> set[str]:
    """The top-level modules a Python block imports."""
    modules = set()
    for node in ast.walk(ast.parse(block.text)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def run_block_programs() -> set[str]:
    return set().union(*(shell_commands(b) for b in marked("run") if b.language == "sh"))


@pytest.fixture
def default_port():
    """Skip unless the README's default address is free: the blocks name it literally."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((DEFAULT_HOST, DEFAULT_PORT))
        except OSError as e:
            pytest.skip(f"the README's examples use {DEFAULT_HOST}:{DEFAULT_PORT}, which is taken "
                        f"on this machine ({e}); stop whatever listens there to run this test")
    return DEFAULT_PORT


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A fresh, empty working directory for the README's commands."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def readme_env(tmp_path) -> dict[str, str]:
    """The environment of a reader who did the install steps: `corelog` on PATH and a `cargo`
    whose `run --release -- ARGS` runs the binary under test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    binary = corelog_bin()
    (bin_dir / "corelog").symlink_to(binary)
    cargo = bin_dir / "cargo"
    cargo.write_text(
        "#!/bin/sh\n"
        "# Stands in for `cargo run --release -- ARGS` in the README: the binary under test.\n"
        'if [ "$1 $2 $3" != "run --release --" ]; then\n'
        '    echo "cargo stand-in: only \'cargo run --release -- ARGS\' is known, not: $*" >&2\n'
        "    exit 2\n"
        "fi\n"
        "shift 3\n"
        f"exec {shlex.quote(binary)} \"$@\"\n")
    cargo.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CORELOG_BROKERS", None)  # The admin commands must reach the README's default.
    return env


def block_command(block: Block) -> list[str]:
    if block.language == "sh":
        return ["bash", "-o", "errexit", "-o", "pipefail", "-o", "xtrace", "-c", block.text]
    if block.language == "python":
        return [sys.executable, "-c", block.text]
    raise AssertionError(f"{block.where()}: no way to run a {block.language!r} block")


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    """Run one block as written; fail with its text and output if it fails or hangs."""
    try:
        proc = subprocess.run(block_command(block), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{block.where()} did not finish within {BLOCK_TIMEOUT_S}s\n"
                    f"--- block ---\n{block.text}--- stdout ---\n{e.stdout}\n"
                    f"--- stderr ---\n{e.stderr}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{block.where()} exited {proc.returncode}\n--- block ---\n{block.text}"
                    f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}", pytrace=False)


def test_readme_marks_every_example_block():
    """Every block of Quick start and Admin is marked, and exactly one set-up command starts the
    broker: an example added without a marker would go untested."""
    blocks = readme_blocks()
    unmarked = [b.where() for b in blocks if b.section in RUNNABLE_SECTIONS and b.marker is None]
    assert not unmarked, f"blocks without a readme-test marker: {unmarked}"
    serve = marked("serve")
    assert len(serve) == 1, f"one serve block expected: {[b.where() for b in serve]}"
    assert [shlex.split(line) for line in serve[0].text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")] == \
        [["cargo", "run", "--release", "--", "serve"]], serve[0].text
    languages = sorted({b.language for b in marked("run")})
    assert languages == ["python", "sh"], f"run blocks in {languages}"
    assert len(marked("install")) == 1


def test_readme_says_what_to_install():
    """The install block names every tool and Python client the examples use, and where the
    `corelog` binary is."""
    install = marked("install")[0].text
    missing = []
    for program in sorted(run_block_programs()):
        wanted = "target/release" if program == "corelog" else program
        if wanted not in install:
            missing.append(f"{program} (expected {wanted!r})")
    python_blocks = [b for b in marked("run") if b.language == "python"]
    for module in sorted(set().union(*(python_imports(b) for b in python_blocks))):
        if module in sys.stdlib_module_names:
            continue
        distribution = DISTRIBUTIONS.get(module)
        assert distribution, f"module {module} is imported by the README: add its distribution"
        if distribution not in install:
            missing.append(f"Python module {module} (expected {distribution!r})")
    assert not missing, f"the install block does not say how to get: {missing}\n{install}"
    assert "target/release/corelog" in marked("serve")[0].text, "where the binary is"


def test_readme_serve_command_starts_the_broker(default_port, workdir, readme_env, tmp_path):
    """The set-up command, run as written from a fresh directory, serves on the README's address
    with its data in ./data there, and Ctrl-C stops it cleanly (exit 0)."""
    block = marked("serve")[0]
    stderr_path = tmp_path / "serve.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(block_command(block), cwd=workdir, env=readme_env,
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{block.where()} exited {proc.returncode} before serving\n"
                            f"--- stderr ---\n{stderr_path.read_text()}", pytrace=False)
            try:
                api_versions_v0(DEFAULT_HOST, default_port)
                break
            except (OSError, ValueError):
                assert time.monotonic() < deadline, (
                    f"{block.where()}: no ApiVersions answer on {DEFAULT_HOST}:{default_port} "
                    f"within {READY_TIMEOUT_S}s\n{stderr_path.read_text()}")
            time.sleep(0.05)  # Polling interval while the broker starts; not synchronisation.
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group.
        code = proc.wait(timeout=STOP_TIMEOUT_S)
        assert code == 0, f"exit {code} after Ctrl-C\n{stderr_path.read_text()}"
        assert (workdir / "data").is_dir(), "the data directory is ./data of the working directory"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(600)
def test_readme_quick_start_runs_as_written(default_port, broker_factory, workdir, readme_env):
    """Every quick-start and admin block, in the order shown, succeeds as written against a
    broker on the README's default address (started here with its defaults but an absolute
    data directory)."""
    missing = sorted(p for p in run_block_programs() - {"corelog"} if shutil.which(p) is None)
    if missing:
        pytest.skip(f"the README's examples need {missing} (scripts/test.sh installs kcat)")
    broker_factory(shards=None, port=default_port)
    for block in marked("run"):
        run_block(block, workdir, readme_env)
