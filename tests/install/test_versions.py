"""One supported torch range and one version number, stated once and agreeing everywhere.

setup.py's ``install_requires`` holds the range; the README states the same one;
every torch the project pins (README's Quick start wheel, the CI CUDA compile
check) and the torch running these tests lie inside it. ``__version__`` lives in
lite_detr_plugin/__init__.py only; setup.py reads it from there.
"""
import importlib.metadata
import pathlib
import re

import pytest
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import lite_detr_plugin

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _torch_range_in_setup() -> str:
    found = re.findall(r'"torch([<>=!~][^"]*)"', (ROOT / "setup.py").read_text())
    assert len(found) == 1, f"setup.py should require torch once, found {found}"
    return found[0]


def _base(version: str) -> Version:
    return Version(Version(version).base_version)  # "2.13.0+cpu" -> 2.13.0


def test_readme_states_setups_range():
    readme = (ROOT / "README.md").read_text()
    stated = re.findall(r"Supported PyTorch: `torch([^`]+)`", readme)
    assert stated == [_torch_range_in_setup()]
    assert not re.search(r"PyTorch\s*(≥|>=)\s*\d", readme), "a second, different torch statement in README.md"


def test_range_contains_every_pinned_torch_and_the_running_one():
    supported = SpecifierSet(_torch_range_in_setup())
    pins = {}
    for path in [ROOT / "README.md", *sorted((ROOT / ".ci").glob("*"))]:
        for pin in re.findall(r"torch==(\d+\.\d+(?:\.\d+)?)", path.read_text()):
            pins[f"{path.name}: torch=={pin}"] = pin
    assert any(name.startswith("README.md") for name in pins), "the Quick start pins no torch wheel"
    outside = [name for name, pin in pins.items() if _base(pin) not in supported]
    assert not outside, f"pinned outside torch{supported}: {outside}"
    assert _base(torch.__version__) in supported, f"running torch {torch.__version__} is outside torch{supported}"


def test_supported_range_is_the_tested_one():
    # 2.11: the GPU machine's wheel; 2.13: dev and CI; 2.15: CUDA compile check and the detrex tests
    supported = SpecifierSet(_torch_range_in_setup())
    assert all(Version(v) in supported for v in ("2.11.0", "2.13.0", "2.15.0"))
    assert Version("2.10.0") not in supported and Version("2.16.0") not in supported


def test_version_has_one_source():
    setup = (ROOT / "setup.py").read_text()
    assert not re.search(r"""\bversion\s*=\s*["']""", setup, re.IGNORECASE), "a version literal in setup.py"
    assert "read_version()" in setup
    init = (ROOT / "lite_detr_plugin" / "__init__.py").read_text()
    assert re.findall(r'^__version__ = "([^"]+)"$', init, re.MULTILINE) == [lite_detr_plugin.__version__]
    Version(lite_detr_plugin.__version__)  # a valid version string


def test_installed_metadata_matches_the_package():
    try:
        installed = importlib.metadata.version("lite_detr_plugin")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("lite_detr_plugin is not pip-installed here (e.g. run from PYTHONPATH)")
    assert installed == lite_detr_plugin.__version__
