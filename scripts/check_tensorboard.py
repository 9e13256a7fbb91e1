#!/usr/bin/env python3
"""Check a TensorBoard log directory against an expectations file, using the real TensorBoard.

Usage: check_tensorboard.py LOG_DIR EXPECTATIONS_JSON

Needs the `tensorboard` Python package (tested with 2.21.0); TensorFlow is not needed. The
expectations file has this shape, where every section of a run is optional:

    {"runs": {"<run directory relative to LOG_DIR>": {
        "scalars": {"<tag>": [[step, value], ...]},
        "histograms": {"<tag>": [{"step": 0, "bucket_count": 30, "count": 100,
                                   "min": -1.0, "max": 1.0,
                                   "buckets": [[left, right, count], ...]}, ...]},
        "texts": {"<tag>": [[step, "text"], ...]}}}}

"buckets" is optional. "min" is the first left edge and "max" the last right edge.

For each run the script checks that:
  * every event file reads through TensorBoard's CRC-checking record reader to the end, and its
    first record is `file_version: "brain.Event:2"`;
  * the strict Python loader (`EventAccumulator`, everything loaded) finds exactly the expected
    tags, each with its plugin name, and exactly the expected points in file order;
  * `tensorboard --inspect --logdir LOG_DIR` lists the run and its tags.
It also checks that LOG_DIR contains no runs besides the expected ones.

Exit status: 0 with one summary line on success, 1 with one line per mismatch, 2 for invalid
arguments or a missing `tensorboard` package.
"""

import json
import math
import os
import subprocess
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors as tb_errors
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
    from tensorboard.util import tensor_util
except ImportError as error:
    print(f"error: the tensorboard package is missing ({error}); "
          "install it with `pip install tensorboard`", file=sys.stderr)
    sys.exit(2)

FILE_VERSION = "brain.Event:2"
PLUGIN_BY_SECTION = {"scalars": "scalars", "histograms": "histograms", "texts": "text"}
# Scalars are f32, so expected values written as f64 may differ in the last bits.
SCALAR_REL_TOL = 1e-6
HISTOGRAM_REL_TOL = 1e-9
INSPECT_TIMEOUT_SECONDS = 120


def main(argv):
    if len(argv) != 3:
        print("usage: check_tensorboard.py LOG_DIR EXPECTATIONS_JSON", file=sys.stderr)
        return 2
    log_dir, expectations_path = argv[1], argv[2]
    if not os.path.isdir(log_dir):
        print(f"error: log directory not found: {log_dir}", file=sys.stderr)
        return 2
    try:
        with open(expectations_path, encoding="utf-8") as file:
            expected_runs = json.load(file)["runs"]
    except (OSError, ValueError, KeyError) as error:
        print(f"error: failed to read expectations from {expectations_path}: {error!r}",
              file=sys.stderr)
        return 2

    failures = []
    found_runs = find_runs(log_dir)
    if sorted(found_runs) != sorted(expected_runs):
        failures.append(f"runs in {log_dir}: found {sorted(found_runs)}, "
                        f"expected {sorted(expected_runs)}")

    points = 0
    for run, expected in sorted(expected_runs.items()):
        run_dir = os.path.join(log_dir, run)
        if run not in found_runs:
            continue
        for path in found_runs[run]:
            failures.extend(check_records(path))
        run_failures, run_points = check_accumulator(run, run_dir, expected)
        failures.extend(run_failures)
        points += run_points
    failures.extend(check_inspect(log_dir, expected_runs))

    if failures:
        for failure in failures:
            print(f"FAIL: {failure}", file=sys.stderr)
        print(f"{len(failures)} mismatch(es) in {log_dir}", file=sys.stderr)
        return 1
    tags = sum(len(tags) for run in expected_runs.values() for tags in run.values())
    print(f"OK: {len(expected_runs)} runs, {tags} tags, {points} points match in {log_dir}")
    return 0


def find_runs(log_dir):
    """Map each run (directory relative to log_dir, "." for log_dir itself) to its event files."""
    runs = {}
    for directory, _, files in os.walk(log_dir):
        # TensorBoard counts any file whose name contains "tfevents" as an event file.
        event_files = sorted(name for name in files if "tfevents" in name)
        if event_files:
            run = os.path.relpath(directory, log_dir)
            runs[run] = [os.path.join(directory, name) for name in event_files]
    return runs


def check_records(path):
    """Read every record of one event file, failing on a CRC mismatch or truncation."""
    reader = pywrap_tensorflow.PyRecordReader_New(path)
    index = 0
    first = None
    while True:
        try:
            reader.GetNext()
        except tb_errors.OutOfRangeError:
            break
        except tb_errors.DataLossError as error:
            # The stub's message starts with the path, which the line already shows.
            reason = error.message.replace(path, "").strip()
            return [f"{path}: record {index} is unreadable: {reason}"]
        if index == 0:
            first = event_pb2.Event.FromString(reader.record())
        index += 1

    if first is None:
        return [f"{path}: file has no records"]
    if first.WhichOneof("what") != "file_version" or first.file_version != FILE_VERSION:
        return [f"{path}: first record is not file_version {FILE_VERSION!r}: {first}"]
    return []


def check_accumulator(run, run_dir, expected):
    """Load one run with EventAccumulator and compare its tags and points with `expected`."""
    size_guidance = {
        event_accumulator.COMPRESSED_HISTOGRAMS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.AUDIO: 0,
        event_accumulator.SCALARS: 0,
        event_accumulator.HISTOGRAMS: 0,
        event_accumulator.TENSORS: 0,
    }
    accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance=size_guidance)
    accumulator.Reload()
    failures = []

    if accumulator.file_version != 2:
        failures.append(f"run {run}: EventAccumulator file_version is "
                        f"{accumulator.file_version}, expected 2")

    # The legacy accumulator files every tensor-form value, including TF2 scalars, as a tensor.
    found_tags = set(accumulator.Tags()[event_accumulator.TENSORS])
    expected_tags = {tag for section in PLUGIN_BY_SECTION for tag in expected.get(section, {})}
    if found_tags != expected_tags:
        failures.append(f"run {run}: tensor tags {sorted(found_tags)}, "
                        f"expected {sorted(expected_tags)}")

    checkers = {"scalars": check_scalar, "histograms": check_histogram, "texts": check_text}
    points = 0
    for section, checker in checkers.items():
        for tag, expected_points in expected.get(section, {}).items():
            if tag not in found_tags:
                continue
            where = f"run {run}, tag {tag}"
            plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
            if plugin != PLUGIN_BY_SECTION[section]:
                failures.append(f"{where}: plugin {plugin!r}, "
                                f"expected {PLUGIN_BY_SECTION[section]!r}")
            events = accumulator.Tensors(tag)
            if len(events) != len(expected_points):
                failures.append(f"{where}: {len(events)} points, expected {len(expected_points)}")
                continue
            for event, expected_point in zip(events, expected_points):
                failures.extend(checker(where, event, expected_point))
                points += 1
    return failures, points


def check_scalar(where, event, expected_point):
    step, value = expected_point
    array = tensor_util.make_ndarray(event.tensor_proto)
    if event.step != step:
        return [f"{where}: step {event.step}, expected {step}"]
    if array.shape != () or array.dtype.name != "float32":
        return [f"{where} step {step}: tensor {array.dtype.name}{list(array.shape)}, "
                "expected a rank-0 float32"]
    actual = float(array)
    # abs_tol stays 0 so that an expected 0.0 must be exactly 0.0.
    if not math.isclose(actual, value, rel_tol=SCALAR_REL_TOL, abs_tol=0.0):
        return [f"{where} step {step}: value {actual!r}, expected {value!r}"]
    return []


def check_histogram(where, event, expected):
    step = expected["step"]
    if event.step != step:
        return [f"{where}: step {event.step}, expected {step}"]
    where = f"{where} step {step}"
    rows = tensor_util.make_ndarray(event.tensor_proto)
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.dtype.name != "float64":
        return [f"{where}: tensor {rows.dtype.name}{list(rows.shape)}, expected float64[k, 3]"]

    failures = []
    if rows.shape[0] != expected["bucket_count"]:
        failures.append(f"{where}: {rows.shape[0]} buckets, expected {expected['bucket_count']}")
    count = float(rows[:, 2].sum())
    if count != expected["count"]:
        failures.append(f"{where}: total count {count}, expected {expected['count']}")
    if rows.shape[0] > 0:
        for name, actual in (("min", float(rows[0, 0])), ("max", float(rows[-1, 1]))):
            if not math.isclose(actual, expected[name], rel_tol=HISTOGRAM_REL_TOL):
                failures.append(f"{where}: {name} {actual!r}, expected {expected[name]!r}")
    if "buckets" in expected:
        actual_rows = rows.tolist()
        if len(actual_rows) != len(expected["buckets"]) or not all(
            math.isclose(a, e, rel_tol=HISTOGRAM_REL_TOL)
            for actual_row, expected_row in zip(actual_rows, expected["buckets"])
            for a, e in zip(actual_row, expected_row)
        ):
            failures.append(f"{where}: buckets {actual_rows}, expected {expected['buckets']}")
    return failures


def check_text(where, event, expected_point):
    step, text = expected_point
    if event.step != step:
        return [f"{where}: step {event.step}, expected {step}"]
    array = tensor_util.make_ndarray(event.tensor_proto)
    if array.size != 1:
        return [f"{where} step {step}: text tensor of shape {list(array.shape)}, expected one string"]
    actual = array.reshape(()).item().decode("utf-8")
    if actual != text:
        return [f"{where} step {step}: text {actual!r}, expected {text!r}"]
    return []


def check_inspect(log_dir, expected_runs):
    """Run `tensorboard --inspect` and check that it lists every run with its tags."""
    command = [sys.executable, "-m", "tensorboard.main", "--inspect", "--logdir", log_dir]
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=INSPECT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return [f"`{' '.join(command)}` timed out after {INSPECT_TIMEOUT_SECONDS} s"]
    if result.returncode != 0:
        return [f"`{' '.join(command)}` exited with {result.returncode}: {result.stderr.strip()}"]

    listed_dirs, tags_by_dir = parse_inspect(result.stdout)
    failures = []
    for run, expected in sorted(expected_runs.items()):
        run_dir = os.path.realpath(os.path.join(log_dir, run))
        if run_dir not in listed_dirs:
            failures.append(f"tensorboard --inspect does not list run {run} ({run_dir}); "
                            f"it lists {sorted(listed_dirs)}")
            continue
        expected_tags = {tag for section in PLUGIN_BY_SECTION for tag in expected.get(section, {})}
        found_tags = tags_by_dir.get(run_dir, set())
        if found_tags != expected_tags:
            failures.append(f"tensorboard --inspect lists tensor tags {sorted(found_tags)} "
                            f"for run {run}, expected {sorted(expected_tags)}")
    return failures


def parse_inspect(output):
    """Return the directories under "Found event files in:" and each one's tensor tags."""
    listed_dirs = set()
    tags_by_dir = {}
    lines = output.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line == "Found event files in:":
            index += 1
            while index < len(lines) and lines[index].strip():
                listed_dirs.add(os.path.realpath(lines[index].strip()))
                index += 1
            continue
        if line.startswith("These tags are in ") and line.endswith(":"):
            run_dir = os.path.realpath(line[len("These tags are in "):-1])
            tags = tags_by_dir.setdefault(run_dir, set())
            index += 1
            in_tensor_block = False
            # Each tag kind is a line of its own ("tensor"), followed by its tags indented.
            while index < len(lines) and not lines[index].startswith("====="):
                current = lines[index]
                if not current.startswith(" "):
                    in_tensor_block = current.strip() == "tensor"
                elif in_tensor_block:
                    tags.add(current.strip())
                index += 1
            continue
        index += 1
    return listed_dirs, tags_by_dir


if __name__ == "__main__":
    sys.exit(main(sys.argv))
