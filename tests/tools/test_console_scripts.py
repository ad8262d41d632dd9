"""Console scripts and tools/: every script resolves to a package ``main(argv)``, and tools/
holds thin wrappers that find the package by its installation (no sys.path edits)."""
import ast
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WRAPPERS = {  # tools/*.py that are exactly a console script
    "analyze_flops.py": "lite-detr-flops",
    "convert_checkpoint.py": "lite-detr-convert",
    "benchmark_kda.py": "lite-detr-benchmark-kda",
    "benchmark_encoder.py": "lite-detr-benchmark-encoder",
    "benchmark_placement.py": "lite-detr-benchmark-placement",
}


def console_scripts():
    setup = (ROOT / "setup.py").read_text()
    return dict(re.findall(r'"([a-z-]+)=([\w.]+:\w+)"', setup))


def test_console_scripts_are_declared():
    scripts = console_scripts()
    assert set(WRAPPERS.values()) <= set(scripts)
    assert all(target.endswith(":main") for target in scripts.values())


@pytest.mark.parametrize("name", sorted(set(WRAPPERS.values())))
def test_console_script_main_prints_help(name, capsys):
    module, function = console_scripts()[name].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("tool", sorted(WRAPPERS))
def test_tool_is_a_wrapper_of_its_console_script(tool):
    source = (ROOT / "tools" / tool).read_text()
    module, function = console_scripts()[WRAPPERS[tool]].split(":")
    imports = [(node.module, [a.name for a in node.names]) for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom)]
    assert (module, [function]) in imports
    code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 12, "a wrapper holds no code of its own"  # docstring, imports, the __main__ guard


def test_no_tool_edits_sys_path():
    offenders = [path.name for path in (ROOT / "tools").glob("*.py")
                 if re.search(r"sys\.path\.(append|insert)|sys\.path\s*=|site\.addsitedir", path.read_text())]
    assert offenders == []
