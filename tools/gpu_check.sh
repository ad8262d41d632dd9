#!/usr/bin/env bash
# One-shot check of the CUDA kernels on a GPU machine (Python 3.12, torch with CUDA, nvcc,
# compute-sanitizer; no network), in under 8 minutes. Run from a copy of the repository:
#
#   tools/gpu_check.sh [OUT_DIR] [--detrex-src DIR] [--budget SECONDS] [--arch 9.0] [--skip-build] [--dry-run]
#
# OUT_DIR (default $OUT, else ./gpu_check_out) receives gpu_check.json (every step's status and
# time, the op-case and autocast results, issue 10's GPU targets), gpu_check.log (the progress),
# kda.json and encoder.json (benchmark rows) and logs.tar.gz (each step's full log).
# Wheels in .whl/ (tools/download_gpu_wheels.sh) are installed first into a temporary folder.
# Steps, in order; each has its own time limit, and a step that would start after --budget
# seconds (default 450) is skipped, so the whole run stays inside 8 minutes:
#   build       the extension, in place, for TORCH_CUDA_ARCH_LIST=9.0 with FORCE_CUDA=1
#   op_cases    small KDA/MSDA fwd+bwd on every kernel path vs the reference, float64 gradcheck
#   cuda_tests  pytest -m cuda
#   memcheck    compute-sanitizer memcheck over the op cases (all dtypes)
#   racecheck   compute-sanitizer racecheck over the op cases (float32)
#   autocast    500 steps of a tiny Lite encoder in fp32, bf16 and fp16 autocast
#   detrex      (--detrex-src) detrex's MSDA CUDA op built with cpp_extension.load
#   bench_kda   the op benchmark on CUDA, fp32 and bf16 (with detrex's op when built)
#   bench_enc   the encoder benchmark on CUDA, fp32 and bf16 (standard vs H3L1-(2+1)x3)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu_check_out}
detrex_src="" budget=450 arch="9.0" dry_run=0 skip_build=0
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --detrex-src) [ $# -ge 2 ] || usage; detrex_src=$2; shift 2 ;;
    --budget) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "--budget needs a number of seconds" >&2; usage; }; budget=$2; shift 2 ;;
    --arch) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+\.[0-9]a?$ ]] || { echo "--arch needs a CUDA architecture like 9.0" >&2; usage; }; arch=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --skip-build) skip_build=1; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) out=$1; shift ;;
  esac
done
if [ -n "$detrex_src" ] && [ ! -f "$detrex_src/detrex/layers/csrc/MsDeformAttn/ms_deform_attn_cuda.cu" ]; then
  echo "--detrex-src $detrex_src: no detrex/layers/csrc/MsDeformAttn/ms_deform_attn_cuda.cu there" >&2; exit 2
fi

py=${PYTHON:-python3}
op_cases="tools/gpu_check/op_cases.py --device cuda"
steps=()  # name|limit seconds|command
[ $skip_build = 1 ] || steps+=("build|300|FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=\${MAX_JOBS:-16} $py setup.py build_ext --inplace && $py -c 'from lite_detr_plugin import ops; print(ops.build_info())'")
steps+=("op_cases|120|$py $op_cases --gradcheck --json \$work/op_cases.json")
steps+=("cuda_tests|150|$py -m pytest -q -m cuda -p no:cacheprovider tests")
steps+=("memcheck|150|compute-sanitizer --tool memcheck --error-exitcode 1 $py $op_cases")
steps+=("racecheck|120|compute-sanitizer --tool racecheck --error-exitcode 1 $py $op_cases --quick")
steps+=("autocast|120|$py tools/gpu_check/autocast_stability.py --device cuda --steps 500 --json \$work/autocast.json")
[ -z "$detrex_src" ] || steps+=("detrex|180|TORCH_CUDA_ARCH_LIST=$arch $py -c 'from lite_detr_plugin.benchmarks.detrex_msda import load_detrex_msda; load_detrex_msda(verbose=True); print(\"detrex MSDA built\")'")
steps+=("bench_kda|150|$py -m lite_detr_plugin.benchmarks.kda --device cuda --dtype float32 --dtype bfloat16 --repeats 10 --json \$out/kda.json")
steps+=("bench_enc|150|$py -m lite_detr_plugin.benchmarks.encoder --device cuda --dtype float32 bfloat16 --variants 'H3L1-(2+1)x3' --repeats 10 --json \$out/encoder.json")

if [ $dry_run = 1 ]; then
  echo "gpu_check plan: output $out, budget ${budget}s, arch $arch${detrex_src:+, detrex $detrex_src}"
  [ ! -d "$root/.whl" ] || echo "  wheels: pip install --no-index --no-deps --target \$TMP/site $root/.whl/*.whl"
  for s in "${steps[@]}"; do IFS='|' read -r name limit cmd <<<"$s"; printf '  %-10s %4ss  %s\n' "$name" "$limit" "$cmd"; done
  exit 0
fi

mkdir -p "$out"
work=$out/work
rm -rf "$work" && mkdir -p "$work"
log=$out/gpu_check.log
: >"$log"
say() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$log"; }
finish() {
  [ -n "${finished:-}" ] && return; finished=1
  cp "$work/steps.tsv" "$work/env.json" "$out/" 2>/dev/null
  (cd "$work" && $py "$root/tools/gpu_check/summarize.py" "$out") 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  rm -f "$out/steps.tsv" "$out/env.json"
  (cd "$out" && tar czf logs.tar.gz work && rm -rf work)
  exit "$rc"
}
trap finish EXIT TERM INT
cd "$root"
export PYTHONUNBUFFERED=1 PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} work out
[ -z "$detrex_src" ] || export LITE_DETR_DETREX_SRC=$(cd "$detrex_src" && pwd)
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl >>"$log" 2>&1 \
    && export PYTHONPATH=$PYTHONPATH:$site && say "installed $(ls .whl/*.whl | wc -l) wheels from .whl"
fi
$py - >"$work/env.json" 2>>"$log" <<'PY'
import json, platform, subprocess, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
try:
    nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
except (OSError, IndexError):
    nvcc = None
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                  "gpu": gpu, "nvcc": nvcc}))
PY
say "env: $(cat "$work/env.json")"
start=$(date +%s)
for s in "${steps[@]}"; do
  IFS='|' read -r name limit cmd <<<"$s"
  elapsed=$(( $(date +%s) - start ))
  if [ $elapsed -ge "$budget" ]; then
    say "$name: skipped (the ${budget}s budget is spent)"
    printf '%s\tskipped\t0\t-\n' "$name" >>"$work/steps.tsv"; continue
  fi
  left=$(( budget - elapsed + 60 )); [ "$limit" -le "$left" ] || limit=$left
  say "$name: starting (limit ${limit}s): $cmd"
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" bash -c "$cmd" >"$work/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 )); seconds="$((ms / 1000)).$(( ms % 1000 / 100 ))"
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status="failed($rc)" ;; esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "work/$name.log" >>"$work/steps.tsv"
  tail -n 3 "$work/$name.log" | sed 's/^/    /' | tee -a "$log"
  say "$name: $status in ${seconds}s"
  if [ "$name" = build ] && [ $rc -ne 0 ]; then say "the build failed: the other steps need it"; break; fi
done
