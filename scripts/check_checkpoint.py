#!/usr/bin/env python3
"""Check a grit checkpoint against an expectations file, using the real safetensors package.

Usage: check_checkpoint.py CHECKPOINT EXPECTATIONS_JSON

Needs the `safetensors` and `numpy` Python packages (tested with safetensors 0.8.0 and
numpy 2.4.6). The expectations file has this shape:

    {"metadata": {"<key>": "<value>", ...},        # exact values, e.g. format and kind
     "metadata_keys": ["<key>", ...],              # keys that must be present
     "tensors": {"<name>": [dim, ...], ...},       # exactly the tensors of the file
     "inputs": [[...], ...],                       # samples, flattened
     "predictions": [[...], ...],                  # grit's outputs for those samples
     "tolerance": 1e-5}

The script checks that:
  * the file opens with `safetensors.safe_open` and `safetensors.numpy.load_file`;
  * it contains exactly the expected tensor names, each float32 with the expected shape;
  * the metadata has the expected keys and values, and `weight_names` lists the model's
    weights in order;
  * the `sha256` metadata value matches the checksum as docs/file-formats.md defines it;
  * a numpy forward pass that follows the `model_config` metadata (Flatten and Dense layers)
    gives the expected predictions within the tolerance.

Exit status: 0 with one summary line on success, 1 with one line per mismatch, 2 for invalid
arguments or missing packages.
"""

import hashlib
import json
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as error:
    print(f"check_checkpoint.py: {error}; run scripts/test.sh to create .venv", file=sys.stderr)
    sys.exit(2)


def checksum(path, metadata):
    """Recomputes the `sha256` metadata value: metadata entries sorted by key (without
    `sha256`) as key NUL value NUL, then tensors sorted by name as
    name NUL dtype NUL comma-separated shape NUL raw little-endian bytes."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key == "sha256":
            continue
        digest.update(key.encode() + b"\0" + metadata[key].encode() + b"\0")
    with open(path, "rb") as file:
        raw = file.read()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    data = raw[8 + header_length :]
    for name in sorted(key for key in header if key != "__metadata__"):
        info = header[name]
        start, end = info["data_offsets"]
        shape = ",".join(str(dim) for dim in info["shape"])
        digest.update(f"{name}\0{info['dtype']}\0{shape}\0".encode())
        digest.update(data[start:end])
    return digest.hexdigest()


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
}


def softmax(x):
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def forward(model_config, tensors, inputs):
    """Runs the layers of a Sequential model config in float64."""
    config = model_config["config"]
    x = np.asarray(inputs, dtype=np.float64).reshape([-1] + list(config["input_shape"]))
    for layer in config["layers"]:
        kind, settings = layer["class_name"], layer["config"]
        if kind == "Flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "Dense":
            name = settings["name"]
            x = x @ tensors[f"{name}/kernel"].astype(np.float64)
            if settings["use_bias"]:
                x = x + tensors[f"{name}/bias"].astype(np.float64)
            activation = settings["activation"]["name"]
            if activation == "softmax":
                x = softmax(x)
            elif activation in ACTIVATIONS:
                x = ACTIVATIONS[activation](x)
            else:
                raise ValueError(f"activation {activation!r} is not implemented here")
        else:
            raise ValueError(f"layer class {kind!r} is not implemented here")
    return x


def check(path, expected):
    problems = []
    with safe_open(path, framework="numpy") as file:
        metadata = file.metadata() or {}
        names = set(file.keys())
    tensors = load_file(path)

    expected_tensors = expected["tensors"]
    for name in sorted(set(expected_tensors) - names):
        problems.append(f"missing tensor {name}")
    for name in sorted(names - set(expected_tensors)):
        problems.append(f"unexpected tensor {name}")
    for name in sorted(names & set(expected_tensors)):
        tensor = tensors[name]
        if tensor.dtype != np.float32:
            problems.append(f"tensor {name} has dtype {tensor.dtype}, expected float32")
        if list(tensor.shape) != expected_tensors[name]:
            problems.append(
                f"tensor {name} has shape {list(tensor.shape)}, expected {expected_tensors[name]}"
            )

    for key in expected.get("metadata_keys", []):
        if key not in metadata:
            problems.append(f"metadata key {key!r} is missing")
    for key, value in expected.get("metadata", {}).items():
        if metadata.get(key) != value:
            problems.append(f"metadata {key!r} is {metadata.get(key)!r}, expected {value!r}")
    if problems:
        return problems, None

    computed = checksum(path, metadata)
    if metadata.get("sha256") != computed:
        problems.append(f"sha256 is {metadata.get('sha256')}, recomputed {computed}")

    model_config = json.loads(metadata["model_config"])
    model_weights = [
        f"{layer['config']['name']}/{weight}"
        for layer in model_config["config"]["layers"]
        if layer["class_name"] == "Dense"
        for weight in (["kernel", "bias"] if layer["config"]["use_bias"] else ["kernel"])
    ]
    weight_names = json.loads(metadata["weight_names"])
    if weight_names != model_weights:
        problems.append(f"weight_names is {weight_names}, the model config gives {model_weights}")

    outputs = forward(model_config, tensors, expected["inputs"])
    predictions = np.asarray(expected["predictions"], dtype=np.float64)
    if outputs.shape != predictions.shape:
        problems.append(f"numpy outputs have shape {outputs.shape}, grit's {predictions.shape}")
        return problems, None
    difference = float(np.abs(outputs - predictions).max())
    if not difference <= expected["tolerance"]:
        problems.append(
            f"numpy and grit predictions differ by up to {difference:.3g}, "
            f"more than {expected['tolerance']}"
        )
    return problems, difference


def main(argv):
    if len(argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    path, expectations = argv[1], argv[2]
    with open(expectations) as file:
        expected = json.load(file)
    problems, difference = check(path, expected)
    if problems:
        for problem in problems:
            print(f"{path}: {problem}")
        return 1
    print(
        f"{path}: {len(expected['tensors'])} tensors, {len(expected['predictions'])} "
        f"predictions match grit's within {difference:.2g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
