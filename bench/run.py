#!/usr/bin/env python3
"""Benchmark grit against Keras 3 (TensorFlow and JAX backends) on MNIST.

Builds the grit-bench binary and creates bench/.venv with the packages pinned in
bench/requirements.txt. Then it trains each configuration once per framework and repetition,
each run in its own process. The order rotates every repetition, so machine drift affects
every framework alike. Every child prints one JSON line, and this script adds the
whole-process wall time, peak resident memory (ru_maxrss from wait4) and CPU time. It writes
everything to bench/results/<date>.json and prints a Markdown table of grit / Keras ratios.

This script uses only the standard library, so any Python 3.9+ can run it. The Keras
children run in the virtual environment, which needs Python 3.12+ because jax 0.12 has no
wheels for older versions.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORKSPACE = BENCH.parent
VENV = BENCH / ".venv"
REQUIREMENTS = BENCH / "requirements.txt"
# A copy of the requirements the virtual environment was installed from.
INSTALLED_REQUIREMENTS = VENV / "installed-requirements.txt"
MNIST = WORKSPACE / "datasets" / "mnist"
MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]

FRAMEWORKS = ["grit", "tensorflow", "jax"]
FRAMEWORK_TITLES = {"grit": "grit", "tensorflow": "Keras/TF", "jax": "Keras/JAX"}
DEFAULT_EPOCHS = {"mlp": 3, "cnn": 2}
SWEEP_BATCH_SIZES = [32, 128, 512]
SWEEP_HIDDEN_UNITS = [128, 512, 2048]
# Variables that pick or size OpenBLAS's kernels. Some machines set them for old OpenBLAS
# builds, and they slow a current numpy, so the Keras children run without them.
OPENBLAS_OVERRIDES = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]


def parse_list(text, allowed=None, kind=str):
    items = [kind(item.strip()) for item in text.split(",") if item.strip()]
    if allowed is not None:
        invalid = [item for item in items if item not in allowed]
        if invalid:
            raise argparse.ArgumentTypeError(
                f"invalid value(s) {invalid}: expected a comma-separated list of {allowed}"
            )
    if not items:
        raise argparse.ArgumentTypeError("expected at least one value")
    return items


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=lambda text: parse_list(text, ["mlp", "cnn", "sweep"]),
        default=["mlp", "cnn"],
        help="comma-separated: mlp (784-128-10), cnn (Keras's MNIST convnet), "
        "sweep (the mlp over batch sizes and hidden widths) (default: mlp,cnn)",
    )

    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs for every model (default: 3 for the mlp and the sweep, 2 for the cnn)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each configuration (default: 1)"
    )

    parser.add_argument(
        "--threads",
        type=lambda text: parse_list(text, kind=int),
        help="comma-separated thread counts, each a configuration of its own (for example "
        "1,2); each run is pinned to that many CPUs and the frameworks are told the count "
        "(default: no limit)",
    )
    parser.add_argument(
        "--frameworks",
        type=lambda text: parse_list(text, FRAMEWORKS),
        default=FRAMEWORKS,
        help="comma-separated subset of grit, tensorflow, jax (default: all three)",
    )

    parser.add_argument(
        "--sweep-grid",
        choices=["cross", "full"],
        default="cross",
        help="cross: batch sizes at hidden 128 and hidden widths at batch 128 (5 "
        "configurations); full: every pair (9) (default: cross)",
    )
    parser.add_argument(
        "--python",
        help="interpreter (3.12+) that creates bench/.venv (default: the first python3.12 "
        "or python3.13 found on PATH or under pyenv)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=BENCH / "results",
        help="folder for the JSON results (default: bench/results)",
    )

    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.threads and min(args.threads) < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def log(message):
    print(f"[run.py] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- setup


def check_mnist():
    missing = [
        name
        for name in MNIST_FILES
        if not (MNIST / name).exists() and not (MNIST / f"{name}.gz").exists()
    ]
    if missing:
        sys.exit(
            f"MNIST files missing in {MNIST}: {', '.join(missing)}. Fetch them with "
            "`cargo run --release -p grit-data --bin fetch-datasets -- --dir datasets mnist`."
        )


def build_grit_bench():
    """Build grit-bench in release mode and return the path of its executable."""
    log("building grit-bench (cargo build --release -p grit-bench)")
    command = [
        "cargo",
        "build",
        "--release",
        "-p",
        "grit-bench",
        "--bin",
        "grit-bench",
        "--message-format=json-render-diagnostics",
    ]
    result = subprocess.run(command, cwd=WORKSPACE, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"building grit-bench failed (exit code {result.returncode})")
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if (
            message.get("reason") == "compiler-artifact"
            and message["target"]["name"] == "grit-bench"
            and message.get("executable")
        ):
            return Path(message["executable"])
    sys.exit("cargo built grit-bench but reported no executable")


def python_version(interpreter):
    try:
        result = subprocess.run(
            [interpreter, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    major, minor = result.stdout.split()
    return int(major), int(minor)


def find_venv_python(requested):
    """Return an interpreter of Python 3.12 or newer for the virtual environment."""
    if requested:
        version = python_version(requested)
        if version is None or version < (3, 12):
            sys.exit(f"--python {requested} is not a Python 3.12+ interpreter (found {version})")
        return requested
    candidates = [shutil.which(name) for name in ("python3.12", "python3.13", "python3")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for pattern in ("3.12*", "3.13*"):
        candidates += sorted(pyenv_root.glob(f"versions/{pattern}/bin/python"), reverse=True)
    for candidate in candidates:
        if candidate and (python_version(str(candidate)) or (0, 0)) >= (3, 12):
            return str(candidate)
    sys.exit(
        "no Python 3.12+ interpreter found (jax 0.12 needs one): install one and pass "
        "--python PATH"
    )


def ensure_venv(requested_python):
    """Create bench/.venv and install the pinned packages unless they are already there."""
    venv_python = VENV / "bin" / "python"
    expected_requirements = REQUIREMENTS.read_text()
    if venv_python.exists() and INSTALLED_REQUIREMENTS.exists():
        if INSTALLED_REQUIREMENTS.read_text() == expected_requirements:
            return venv_python
    if not venv_python.exists():
        interpreter = find_venv_python(requested_python)
        log(f"creating {VENV} with {interpreter}")
        subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True)
    log(f"installing {REQUIREMENTS.name} into {VENV} (about 2 GB, a few minutes)")
    subprocess.run(
        [
            str(venv_python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    INSTALLED_REQUIREMENTS.write_text(expected_requirements)
    return venv_python


# ----------------------------------------------------------------------------- configurations


def make_configs(args):
    """Return the configurations to run, without duplicates, in a fixed order."""
    shapes = []
    for model in args.models:
        epochs = args.epochs or DEFAULT_EPOCHS["cnn" if model == "cnn" else "mlp"]
        if model == "mlp":
            shapes.append(("mlp", 128, 128, epochs))
        elif model == "cnn":
            shapes.append(("cnn", None, 128, epochs))
        elif args.sweep_grid == "full":
            shapes += [
                ("mlp", hidden, batch, epochs)
                for hidden in SWEEP_HIDDEN_UNITS
                for batch in SWEEP_BATCH_SIZES
            ]
        else:
            shapes += [("mlp", 128, batch, epochs) for batch in SWEEP_BATCH_SIZES]
            shapes += [("mlp", hidden, 128, epochs) for hidden in SWEEP_HIDDEN_UNITS[1:]]
    configs = []
    for threads in args.threads or [None]:
        for model, hidden, batch_size, epochs in shapes:
            config = {
                "model": model,
                "hidden": hidden,
                "batch_size": batch_size,
                "epochs": epochs,
                "threads": threads,
            }
            if config not in configs:
                configs.append(config)
    return configs


def config_label(config):
    parts = [config["model"]]
    if config["hidden"] is not None:
        parts.append(f"h{config['hidden']}")
    parts.append(f"b{config['batch_size']}")
    if config["threads"] is not None:
        parts.append(f"t{config['threads']}")
    return " ".join(parts)


def child_command(framework, config, grit_bench, venv_python):
    if framework == "grit":
        command = [str(grit_bench)]
    else:
        command = [str(venv_python), str(BENCH / "keras_train.py")]
    command += [
        "--model",
        config["model"],
        "--epochs",
        str(config["epochs"]),
        "--batch-size",
        str(config["batch_size"]),
    ]
    if config["hidden"] is not None:
        command += ["--hidden", str(config["hidden"])]
    if framework != "grit" and config["threads"] is not None:
        command += ["--threads", str(config["threads"])]
    return command


def child_environment(framework, threads):
    env = dict(os.environ)
    if framework != "grit":
        env["KERAS_BACKEND"] = framework
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        for name in OPENBLAS_OVERRIDES:
            env.pop(name, None)
    if threads is not None:
        # grit's thread pool (rayon) reads RAYON_NUM_THREADS; numpy's OpenBLAS and any
        # OpenMP runtime read the other two.
        env["RAYON_NUM_THREADS"] = str(threads)
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
    return env


# ----------------------------------------------------------------------------- running


def probe_round_trip(grit_bench, cpus):
    """Return the round trip between two threads in ns (see `grit-bench --probe`), or None.

    The 2-vCPU VMs the benchmarks ran on gave 60 to 130 ns at some times and 350 to 400 ns at
    others. Two threads that share data ran much slower in the second state, so every run
    records the value measured just before it.
    """
    if cpus is not None and len(cpus) < 2:
        # Two spinning threads on one CPU would wait for each other's time slices.
        return None
    output = subprocess.run(
        [str(grit_bench), "--probe"],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    ).stdout
    return json.loads(output)["core_round_trip_ns"]


def run_child(framework, config, grit_bench, venv_python, log_dir, index):
    """Run one training process and return its JSON result with process measurements."""
    command = child_command(framework, config, grit_bench, venv_python)
    env = child_environment(framework, config["threads"])
    cpus = None
    if config["threads"] is not None:
        cpus = sorted(os.sched_getaffinity(0))[: config["threads"]]
    stem = f"{index:03d}-{framework}-{config_label(config).replace(' ', '-')}"
    stdout_path = log_dir / f"{stem}.out"
    stderr_path = log_dir / f"{stem}.err"

    load_before = os.getloadavg()
    round_trip = probe_round_trip(grit_bench, cpus)
    if round_trip is not None:
        log(f"thread round trip before the run: {round_trip:.0f} ns")
    started = time.perf_counter()
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=WORKSPACE,
            env=env,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        # wait4 returns this child's own resource usage, so ru_maxrss is its peak RSS.
        _, status, usage = os.wait4(process.pid, 0)
    wall_seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)

    record = {
        "framework": framework,
        "config": config,
        "command": command,
        "cpus": cpus,
        "exit_code": process.returncode,
        "wall_seconds": wall_seconds,
        # Linux reports ru_maxrss in KiB.
        "max_rss_mib": usage.ru_maxrss / 1024,
        "cpu_user_seconds": usage.ru_utime,
        "cpu_system_seconds": usage.ru_stime,
        "load_average_before": load_before,
        "core_round_trip_ns_before": round_trip,
        "load_average_after": os.getloadavg(),
        "stdout": str(stdout_path),
        "stderr": str(stderr_path),
    }
    result = None
    for line in reversed(stdout_path.read_text().splitlines()):
        try:
            candidate = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(candidate, dict) and "epoch_seconds" in candidate:
            result = candidate
            break
    if process.returncode != 0 or result is None:
        tail = stderr_path.read_text()[-2000:]
        record["error"] = f"exit code {process.returncode}, no result line; stderr ends:\n{tail}"
        log(f"{framework} {config_label(config)} failed: see {stderr_path}")
    record["result"] = result
    return record


def steady_epoch_seconds(epoch_seconds):
    """Median of the epochs after the first (the first includes tracing and warm-up)."""
    steady = epoch_seconds[1:] or epoch_seconds
    return statistics.median(steady)


def summarize(records, configs, frameworks):
    """Return one summary per configuration: medians per framework and grit / Keras ratios."""
    summaries = []
    for config in configs:
        per_framework = {}
        for framework in frameworks:
            runs = [
                r
                for r in records
                if r["config"] == config and r["framework"] == framework and r["result"]
            ]
            if not runs:
                continue
            per_framework[framework] = {
                "runs": len(runs),
                "epoch_seconds": statistics.median(
                    steady_epoch_seconds(r["result"]["epoch_seconds"]) for r in runs
                ),
                "wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
                "max_rss_mib": statistics.median(r["max_rss_mib"] for r in runs),
                "cpu_seconds": statistics.median(
                    r["cpu_user_seconds"] + r["cpu_system_seconds"] for r in runs
                ),
                "test_accuracy": statistics.mean(r["result"]["test_accuracy"] for r in runs),
            }
        ratios = {}
        if "grit" in per_framework:
            grit = per_framework["grit"]
            for framework, other in per_framework.items():
                if framework == "grit":
                    continue
                ratios[framework] = {
                    metric: grit[metric] / other[metric] if other[metric] else None
                    for metric in grit
                    if metric != "runs"
                }
        summaries.append({"config": config, "frameworks": per_framework, "ratios": ratios})
    return summaries


# ----------------------------------------------------------------------------- reporting

METRICS = [
    ("epoch_seconds", "epoch s (median after the first)", "{:.3f}"),
    ("wall_seconds", "process wall s", "{:.2f}"),
    ("max_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("cpu_seconds", "process CPU s (user + system)", "{:.2f}"),
    ("test_accuracy", "test accuracy", "{:.4f}"),
]


def markdown_table(summaries, frameworks):
    keras = [f for f in frameworks if f != "grit"]
    header = ["config", "metric"] + [FRAMEWORK_TITLES[f] for f in frameworks]
    if "grit" in frameworks:
        header += [f"grit / {FRAMEWORK_TITLES[f]}" for f in keras]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for summary in summaries:
        label = config_label(summary["config"])
        for metric, title, number_format in METRICS:
            cells = [label, title]
            for framework in frameworks:
                values = summary["frameworks"].get(framework)
                cells.append(number_format.format(values[metric]) if values else "failed")
            if "grit" in frameworks:
                for framework in keras:
                    ratio = summary["ratios"].get(framework, {}).get(metric)
                    cells.append(f"{ratio:.2f}" if ratio is not None else "n/a")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_output(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_description():
    lscpu = {}
    for line in command_output(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        lscpu[key.strip()] = value.strip()
    flags = set(lscpu.get("Flags", "").split())
    memory_kib = None
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {
        "cpu_model": lscpu.get("Model name"),
        "cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "simd_flags": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_bf16"}),
        "memory_gib": round(memory_kib / 1024**2, 1) if memory_kib else None,
        "kernel": platform.release(),
        "rustc": command_output(["rustc", "--version"]).strip(),
        "git_commit": command_output(["git", "-C", str(WORKSPACE), "rev-parse", "HEAD"]).strip(),
        "git_dirty": bool(
            command_output(["git", "-C", str(WORKSPACE), "status", "--porcelain"]).strip()
        ),
    }


def main(argv):
    args = parse_args(argv)
    check_mnist()
    frameworks = args.frameworks
    # Also built for Keras-only runs, whose records get the `--probe` value as well.
    grit_bench = build_grit_bench()
    needs_keras = any(f != "grit" for f in frameworks)
    venv_python = ensure_venv(args.python) if needs_keras else None

    configs = make_configs(args)
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    args.output.mkdir(parents=True, exist_ok=True)
    log_dir = args.output / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    total = len(configs) * len(frameworks) * args.repeats
    log(f"{len(configs)} configurations x {len(frameworks)} frameworks x {args.repeats} repeats")

    machine = machine_description()
    load_start = os.getloadavg()
    records = []
    for repeat in range(args.repeats):
        # Rotate the order each repetition so no framework always runs first or last.
        shift = repeat % len(frameworks)
        order = frameworks[shift:] + frameworks[:shift]
        for config in configs:
            for framework in order:
                index = len(records) + 1
                log(f"[{index}/{total}] repeat {repeat + 1}: {framework} {config_label(config)}")
                record = run_child(framework, config, grit_bench, venv_python, log_dir, index)
                record["repeat"] = repeat
                records.append(record)

    summaries = summarize(records, configs, frameworks)
    report = {
        "date": stamp,
        "command": [Path(sys.argv[0]).name] + list(argv),
        "machine": machine,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "settings": {
            "models": args.models,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "threads": args.threads,
            "frameworks": frameworks,
            "sweep_grid": args.sweep_grid,
            "unset_for_keras": OPENBLAS_OVERRIDES,
        },
        "summary": summaries,
        "runs": records,
    }
    result_path = args.output / f"{stamp}.json"
    result_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {result_path}")

    print(
        f"grit vs Keras 3 on MNIST, {machine['cpu_model']}, {machine['cpus']} CPUs, "
        f"{args.repeats} repeat(s); load average at start "
        f"{' '.join(f'{v:.2f}' for v in load_start)}\n"
    )
    print(markdown_table(summaries, frameworks))
    failures = [r for r in records if "error" in r]
    if failures:
        log(f"{len(failures)} run(s) failed; their stderr files are listed above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
