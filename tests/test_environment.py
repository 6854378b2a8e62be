"""environment.yml (conda/mamba) and pyproject.toml + Makefile (pip) install the same set."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} \?= (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile sets no {name}"
    return match.group(1).strip()


def conda_packages(environment: dict) -> dict[str, str]:
    packages = {}
    for item in environment["dependencies"]:
        if isinstance(item, str):
            name, _, spec = re.match(r"([A-Za-z0-9_.\-]+)(([<>=!~].*)?)$", item).groups()[0:3]
            packages[name.lower()] = spec or ""
    return packages


def pip_section(environment: dict) -> list[str]:
    sections = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(sections) == 1
    return sections[0]


def test_conda_packages_match_pyproject_bounds(pyproject, environment):
    """Conda installs the product's and the lab's packages (the ``lab`` extra) at their bounds."""
    requirements = [*pyproject["dependencies"], *pyproject["optional-dependencies"]["lab"]]
    declared = {Requirement(r).name.lower(): Requirement(r) for r in requirements}
    for name, spec in conda_packages(environment).items():
        if name in ("python", "pip"):
            continue
        assert name in declared, f"environment.yml installs {name}, pyproject.toml does not"
        assert SpecifierSet(spec) == declared[name].specifier, name


def test_pip_section_installs_the_package_with_the_makefile_extras(environment):
    pip = pip_section(environment)
    assert f"-e .[{makefile_variable('EXTRAS')}]" in pip
    assert makefile_variable("TORCH_SPEC") in pip


def test_extras_named_by_the_makefile_exist(pyproject):
    extras = set(makefile_variable("EXTRAS").split(","))
    assert extras <= set(pyproject["optional-dependencies"])


def test_python_version_is_supported(pyproject, environment):
    python = conda_packages(environment)["python"].lstrip("=")
    assert SpecifierSet(pyproject["requires-python"]).contains(python + ".0")


def test_torch_pin_satisfies_pyproject(pyproject):
    torch = next(Requirement(r) for r in pyproject["dependencies"] if r.startswith("torch"))
    pinned = makefile_variable("TORCH_SPEC").split("==")[1]
    assert torch.specifier.contains(pinned)


def test_the_lab_packages_are_an_extra_not_the_products(pyproject):
    """``pip install .`` installs the product without the notebooks' and reports' packages."""
    core = {Requirement(r).name.lower() for r in pyproject["dependencies"]}
    lab = {Requirement(r).name.lower() for r in pyproject["optional-dependencies"]["lab"]}
    assert {"jupyterlab", "papermill", "nbval", "pandas", "matplotlib", "jiwer"} <= lab
    assert not core & lab
    assert {"max", "tiktoken", "openai-whisper"} <= core
