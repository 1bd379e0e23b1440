#!/usr/bin/env bash
# The GPU check of issue 26, in one call, on one H100 or H200 (planned to end within 8 minutes):
#
#   bash bench/gpu_check.sh [OUT_DIR]          # OUT_DIR: default $OUT, else gpu_check_out/
#
# Steps (each its own time limit, all inside one budget of GPU_CHECK_BUDGET seconds, 460 by
# default; a step that fails or runs out of time is recorded as such and the next one runs):
#   env        nvidia-smi, python, torch, CUDA; the project's imports (see "Dependencies")
#   nccl       the DDP-over-NCCL test at world size 1 (tests/test_cuda.py -k nccl)
#   cuda_tests the rest of `pytest -m cuda` (tests/test_cuda.py, the only file with the mark)
#   doctor     `workbench doctor --device cuda --json`
#   cifar_bf16 bench/cifar_throughput.py: CIFAR-10 ResNet-18 PGD-10 Madry AT, images/s, with
#              --amp bf16 --channels-last --cudnn-benchmark (synthetic-cifar10: CIFAR's shape)
#   cifar_fp32 the same with --amp off
#   demo       trains the demo preset (SmallCNN on mnist-5k, bundled) on the GPU: a checkpoint
#   paper      `workbench eval <demo> --suite paper --device cuda --json` on the 1,000 test
#              digits: examples/s as the evidence reports it (early stop on, the default)
#   early_stop bench/early_stop.py on the same checkpoint, 500 digits, one full/early pair:
#              the paper suite's wall time with and without early stop on the GPU, agreement
# and writes one JSON, OUT_DIR/gpu_check.json: per step its status (ok, failed, timed_out,
# skipped, nothing_passed: pytest skipped every test), exit code, seconds and last log lines,
# and the numbers each step gave. Every step's whole log is OUT_DIR/<step>.log. The script itself exits 0 when every step is ok.
#
# Dependencies. Nothing is downloaded: the device machine has no internet. The interpreter
# is $PYTHON, else .venv/bin/python when it exists and imports torch with CUDA, else python3
# (on the lent H100/H200 machines that one holds torch 2.11 with CUDA 13). The project runs
# from this checkout through PYTHONPATH (no install). What the image lacks must be carried as
# wheels in .whl/ (Python 3.12, manylinux x86_64): pydantic, pydantic-core, annotated-types,
# typing-inspection, tomli-w, pyautoattack, submitit, textual, textual-plotext, plotext,
# platformdirs, linkify-it-py, mdit-py-plugins, uc-micro-py (see bench/README.md for the pip
# download line). When .whl/ exists they are installed with --no-index into a scratch
# folder first; a missing module is named in env.missing and the steps that need it fail
# on their own.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR" || exit 2
BUDGET=${GPU_CHECK_BUDGET:-460}
START=$(date +%s)
STEPS_FILE="$OUT_DIR/steps.tsv"
: >"$STEPS_FILE"
export PYTHONUNBUFFERED=1

if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    PY=.venv/bin/python
else
    PY=python3
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site .whl/*.whl >"$OUT_DIR/wheels.log" 2>&1
    export PYTHONPATH="/tmp/gpu-check-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# run_step NAME LIMIT_S COMMAND...: runs it under `timeout`, within what is left of the budget,
# with its output in OUT_DIR/NAME.log (stdout alone in OUT_DIR/NAME.out), and records a line.
run_step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 20 ]; then
        printf '%s\tskipped\t-\t0\n' "$name" >>"$STEPS_FILE"
        echo "[$name] skipped: $left s of the budget left" >&2
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "[$name] (limit ${limit} s) $*" >&2
    local t0 rc status
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.log"
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status=timed_out ;;
        *) status=failed ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(($(date +%s) - t0))" >>"$STEPS_FILE"
    echo "[$name] $status (exit $rc, $(($(date +%s) - t0)) s)" >&2
}

run_step env 60 "$PY" - <<'EOF'
import importlib, json, platform, subprocess, sys
doc = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform()}
try:
    doc["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.TimeoutExpired) as exc:
    doc["nvidia_smi"] = f"not run: {exc}"
missing = []
for mod in ("torch", "torchvision", "numpy", "pydantic", "typer", "rich", "safetensors", "tomli_w",
            "scipy", "autoattack", "submitit", "textual", "textual_plotext", "pytest"):
    try:
        importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - any failure to import is what we report
        missing.append(f"{mod} ({type(exc).__name__}: {exc})")
doc["missing"] = missing
try:
    import torch
    doc["torch"] = torch.__version__
    doc["torch_cuda"] = torch.version.cuda
    doc["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        doc["device"] = torch.cuda.get_device_name(0)
        doc["bf16"] = torch.cuda.is_bf16_supported()
except Exception as exc:  # noqa: BLE001
    doc["torch_error"] = repr(exc)
print(json.dumps(doc))
sys.exit(0 if not missing and doc.get("cuda_available") else 1)
EOF

run_step nccl 120 "$PY" -m pytest -p no:cacheprovider -m cuda tests/test_cuda.py -k nccl \
    --junitxml="$OUT_DIR/nccl.xml"
run_step cuda_tests 200 "$PY" -m pytest -p no:cacheprovider -m cuda tests/test_cuda.py \
    -k "not nccl" --junitxml="$OUT_DIR/cuda_tests.xml"
run_step doctor 150 "$PY" -m workbench.cli doctor --device cuda --json
run_step cifar_bf16 120 "$PY" bench/cifar_throughput.py --device cuda --amp bf16 \
    --channels-last --cudnn-benchmark --json
run_step cifar_fp32 120 "$PY" bench/cifar_throughput.py --device cuda --amp off \
    --channels-last --cudnn-benchmark --json
DEMO_DIR=/tmp/gpu-check-runs
rm -rf "$DEMO_DIR"
run_step demo 150 "$PY" -m workbench.cli run demo --headless --device cuda \
    --runs-dir "$DEMO_DIR" --name demo
CKPT="$DEMO_DIR/demo/best.safetensors"
run_step paper 120 "$PY" -m workbench.cli eval "$CKPT" --suite paper --device cuda --json
run_step early_stop 150 "$PY" bench/early_stop.py "$CKPT" --samples 500 --rounds 1 \
    --device cuda --json

# the summary: standard library only, so it runs whatever failed above
"$PY" - "$OUT_DIR" "$START" <<'EOF'
import json, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

out, start = Path(sys.argv[1]), float(sys.argv[2])

def tail(path: Path, n: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []

def stdout_json(name: str):
    """The last line of a step's stdout that parses as a JSON object (None if none)."""
    try:
        text = (out / f"{name}.out").read_text(errors="replace")
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None

def junit(name: str):
    try:
        root = ET.parse(out / f"{name}.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):
        status = "passed"
        for kind in ("failure", "error", "skipped"):
            el = case.find(kind)
            if el is not None:
                status = kind
                cases.append({"test": case.get("name"), "status": status,
                              "message": (el.get("message") or "")[:300]})
                break
        else:
            cases.append({"test": case.get("name"), "status": status})
    counts = {s: sum(c["status"] == s for c in cases) for s in ("passed", "failure", "error", "skipped")}
    return {"counts": counts, "cases": cases}

steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, status, rc, seconds = line.split("\t")
    steps[name] = {"status": status, "exit": None if rc == "-" else int(rc), "seconds": int(seconds),
                   "log_tail": tail(out / f"{name}.log")}

def pick(doc, *keys):
    return None if doc is None else {k: doc.get(k) for k in keys}

paper = stdout_json("paper")
results = {
    "env": stdout_json("env"),
    "nccl_world_size_1": junit("nccl"),
    "cuda_tests": junit("cuda_tests"),
    "doctor": stdout_json("doctor"),
    "cifar_bf16": pick(stdout_json("cifar_bf16"), "device", "batch", "steps", "images_per_s",
                       "step_ms", "perf", "achieved_over_peak"),
    "cifar_fp32": pick(stdout_json("cifar_fp32"), "device", "batch", "steps", "images_per_s",
                       "step_ms", "perf", "achieved_over_peak"),
    "paper_suite": None if paper is None else {
        "n": paper.get("n"), "examples_per_s": paper.get("examples_per_s"),
        "seconds_total": paper.get("seconds_total"), "seconds": paper.get("seconds"),
        "table": paper.get("table"), "intervals": paper.get("intervals"),
        "early_stop": paper.get("early_stop"), "batch_size": paper.get("batch_size"),
        "device": paper.get("device")},
    "early_stop": pick(stdout_json("early_stop"), "n", "wall_s", "speedup_median", "agreement",
                       "worst_case_full", "worst_case_early", "worst_case_diff_points"),
}
for name in ("nccl", "cuda_tests"):  # pytest exits 0 when every test skipped (no GPU seen)
    j = results["nccl_world_size_1" if name == "nccl" else name]
    if name in steps and steps[name]["status"] == "ok" and (j is None or not j["counts"]["passed"]):
        steps[name]["status"] = "nothing_passed"
doc = {"kind": "gpu_check", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
       "seconds": round(time.time() - start, 1),
       "all_ok": all(s["status"] == "ok" for s in steps.values()),
       "steps": steps, "results": results}
(out / "gpu_check.json").write_text(json.dumps(doc, indent=1))
print(json.dumps({k: v["status"] for k, v in steps.items()}))
print(f"{out / 'gpu_check.json'}: {doc['seconds']} s, all ok: {doc['all_ok']}")
sys.exit(0 if doc["all_ok"] else 1)
EOF
