"""The Dockerfile, read instruction by instruction: its layers and user, the build context it
copies from, and the wheel it installs holding every file of the packages."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.support.deployment import ROOT, dockerfile_instructions, index_of

CODE_PACKAGES = ("aggregator", "api", "worker")


def test_dockerfile_layers_user_and_health() -> None:
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert instructions[0][0] == "FROM"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", instructions[0][1]), instructions[0]
    env = " ".join(arg for kind, arg in instructions if kind == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    copies = [arg for kind, arg in instructions if kind == "COPY"]
    assert copies[0].startswith("pyproject.toml")
    # Dependencies, and the build backend, come from pyproject.toml before any code is copied.
    deps_run = index_of(instructions, "RUN", r"pip install -r")
    assert "['build-system']['requires']" in instructions[deps_run][1]
    first_code_copy = index_of(instructions, "COPY", rf"^({'|'.join(CODE_PACKAGES)})\b")
    assert deps_run < first_code_copy
    # The code layer installs only the project, offline: no dependencies, no build isolation.
    project_install = index_of(instructions, "RUN", r"pip install .*--no-deps")
    assert "--no-build-isolation" in instructions[project_install][1]
    assert first_code_copy < project_install
    # pyproject.toml names README.md as the readme: the build reads it.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert index_of(instructions, "COPY", rf"^{re.escape(readme)}\b") < project_install
    for package in CODE_PACKAGES:
        assert index_of(instructions, "COPY", rf"^{package}\b") < project_install
    user = [arg for kind, arg in instructions if kind == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert project_install < kinds.index("USER") < kinds.index("CMD")
    assert "HEALTHCHECK" in kinds
    assert instructions[-1] == ("CMD", '["python", "-m", "api"]')


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything is left out (.venv, .git, data/, caches), then the sources.
    assert patterns[0] == "*"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    sources = [arg.split()[0] for kind, arg in dockerfile_instructions() if kind == "COPY"]
    assert set(sources) <= allowed, f"COPY of a path the context leaves out: {sources}"
    for source in sources:
        assert (ROOT / source).exists(), source


def test_the_image_gets_every_file_of_the_packages_not_only_the_python(tmp_path: Path) -> None:
    """The Dockerfile's ``pip install .`` builds a wheel from the context: a file the wheel
    leaves out (the page's HTML, script and style) is missing from the image, with no error
    until someone opens ``/``. Build that wheel from the same files and look inside."""
    sources = [arg.split()[0] for kind, arg in dockerfile_instructions() if kind == "COPY"]
    context = tmp_path / "context"
    tracked = subprocess.run(
        ["git", "ls-files", *sources], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_bytes((ROOT / name).read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    package_files = [name for name in tracked if name.split("/")[0] in (*CODE_PACKAGES, "producer")]
    assert any(name.startswith("api/static/page/") for name in package_files)
    assert [name for name in package_files if name not in in_wheel] == []
