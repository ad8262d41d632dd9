"""tools/gpu_check.sh and its Python pieces, as far as a CPU reaches.

The GPU run itself needs a GPU; here: argument parsing, the dry-run plan, a run
whose budget skips every step (logs, summary JSON, archive), the op cases and the
autocast runner on the CPU in a tiny configuration, the target arithmetic of the
summary, and the detrex-snapshot hook's argument checks.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")
STEPS = ["build", "op_cases", "cuda_tests", "memcheck", "racecheck", "autocast", "bench_kda", "bench_enc"]


def tool(name):
    path = os.path.join(ROOT, "tools", "gpu_check", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"gpu_check_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args, env=None):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_dry_run_prints_every_step_with_its_limit(tmp_path):
    result = run_script(str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"gpu_check plan: output {tmp_path / 'out'}, budget 450s, arch 9.0")
    names = [line.split()[0] for line in lines[1:] if not line.strip().startswith("wheels:")]
    assert names == STEPS
    plan = result.stdout
    assert "FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0" in plan
    assert "compute-sanitizer --tool memcheck" in plan and "compute-sanitizer --tool racecheck" in plan
    assert "pytest -q -m cuda" in plan and "--steps 500" in plan and "--gradcheck" in plan
    assert "--dtype float32 --dtype bfloat16" in plan
    assert not os.path.exists(tmp_path / "out")  # a dry run writes nothing


def test_dry_run_with_a_detrex_snapshot_adds_its_build(tmp_path):
    snapshot = tmp_path / "detrex"
    (snapshot / "detrex" / "layers" / "csrc" / "MsDeformAttn").mkdir(parents=True)
    (snapshot / "detrex" / "layers" / "csrc" / "MsDeformAttn" / "ms_deform_attn_cuda.cu").write_text("")
    result = run_script("--dry-run", "--detrex-src", str(snapshot), "--arch", "8.0", "--skip-build", "--budget", "300")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if "wheels:" not in line]
    assert names == [s for s in STEPS if s != "build"][:5] + ["detrex", "bench_kda", "bench_enc"]
    assert "budget 300s, arch 8.0" in result.stdout and "load_detrex_msda" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--budget", "soon"], "--budget needs a number"),
    (["--arch", "sm90"], "--arch needs a CUDA architecture"),
    (["--detrex-src", "/nonexistent"], "no detrex/layers/csrc/MsDeformAttn"),
    (["--frobnicate"], "unknown option"),
])
def test_bad_arguments_are_refused(args, message):
    result = run_script(*args, "--dry-run")
    assert result.returncode == 2 and message in result.stderr


def test_a_spent_budget_skips_every_step_and_still_reports(tmp_path):
    out = tmp_path / "out"
    result = run_script(str(out), "--budget", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(os.listdir(out)) == ["gpu_check.json", "gpu_check.log", "logs.tar.gz"]  # few files: $OUT returns <= 8
    report = json.loads((out / "gpu_check.json").read_text())
    assert [s["name"] for s in report["steps"]] == STEPS
    assert all(s["status"] == "skipped" for s in report["steps"])
    assert report["env"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert all(t["status"] == "not measured" for t in report["targets"])


def test_summary_checks_the_targets_against_benchmark_rows(tmp_path):
    rows = [
        dict(device="cuda", dtype="float32", shape="encoder", op="kda", impl="compiled", median_ms=2.0, peak_mb=10.0),
        dict(device="cuda", dtype="float32", shape="encoder", op="kda", impl="reference", median_ms=30.0, peak_mb=100.0),
        dict(device="cuda", dtype="float32", shape="encoder", op="msda", impl="detrex", median_ms=1.6, peak_mb=5.0),
    ]
    for row in rows:
        row["pass"] = "forward+backward"
    (tmp_path / "kda.json").write_text(json.dumps(rows))
    encoder = [dict(device="cuda", dtype="float32", variant="H3L1-(2+1)x3", mode="paper", attention="kda",
                    latency_ratio=0.4)]
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    (tmp_path / "steps.tsv").write_text("build\tok\t12.5\twork/build.log\n")
    report = tool("summarize").summarize(str(tmp_path))
    targets = {t["target"].split(" (")[0]: t for t in report["targets"]}
    speedup = targets["KDA fwd+bwd speed-up over the reference"]
    assert speedup["value"] == 15.0 and speedup["status"] == "met"
    assert targets["KDA fwd+bwd time / detrex MSDA"]["value"] == 1.25
    assert targets["KDA fwd+bwd time / detrex MSDA"]["status"] == "missed"
    assert targets["KDA fwd+bwd extra peak / reference's"]["value"] == 0.1
    assert targets["KDA fwd+bwd extra peak / reference's"]["status"] == "met"
    statuses = [t["status"] for name, t in targets.items() if name.startswith("Lite H3L1")]
    assert statuses == ["met", "not measured"]  # bf16 rows missing
    assert report["ok"] and report["steps"][0]["seconds"] == 12.5


def test_op_cases_run_on_the_cpu(tmp_path):
    from lite_detr_plugin import ops

    if not ops.has_kernel("cpu"):
        pytest.skip("the compiled CPU op is not built")
    out = tmp_path / "cases.json"
    assert tool("op_cases").main(["--device", "cpu", "--quick", "--gradcheck", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] and len(report["cases"]) == 12  # D 32, 64 (fast paths), 30 (generic) x key x value heads
    assert {c["dim"] for c in report["cases"]} == {32, 64, 30}
    assert all(report["gradcheck"].values())


def test_autocast_runner_on_the_cpu(tmp_path):
    out = tmp_path / "autocast.json"
    code = tool("autocast_stability").main([
        "--device", "cpu", "--steps", "12", "--precisions", "bfloat16", "--size", "40x48", "--embed-dim", "16",
        "--variant", "H2L2-(1+1)x1", "--rtol", "0.5", "--json", str(out),
    ])
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"float32", "bfloat16"}
    assert report["runs"]["float32"]["finite"] and report["runs"]["bfloat16"]["finite"]
    assert report["runs"]["float32"]["final_loss"] < report["runs"]["float32"]["first_loss"]  # it trains
    assert code == (0 if report["ok"] else 1)


def test_autocast_runner_refuses_bad_arguments():
    runner = tool("autocast_stability")
    for argv in (["--device", "cpu", "--steps", "3"], ["--device", "cpu", "--size", "big"]):
        with pytest.raises(SystemExit) as info:
            runner.main(argv)
        assert info.value.code == 2


def test_detrex_snapshot_hook_checks_its_folder(tmp_path, monkeypatch):
    from lite_detr_plugin.benchmarks import detrex_msda

    with pytest.raises(ValueError, match="detrex_src=.*is not a detrex source tree"):
        detrex_msda.msda_sources(str(tmp_path))
    monkeypatch.delenv(detrex_msda.ENV_VAR, raising=False)
    with pytest.raises(ValueError, match="LITE_DETR_DETREX_SRC"):
        detrex_msda.load_detrex_msda()
    monkeypatch.setenv(detrex_msda.ENV_VAR, str(tmp_path))
    assert detrex_msda.snapshot_available() is False  # no sources there (and no GPU here)
    real = "/work/detrex_src/detrex"
    if os.path.isdir(real):
        csrc, cuda = detrex_msda.msda_sources(real)
        assert os.path.isfile(cuda) and cuda.startswith(csrc)
