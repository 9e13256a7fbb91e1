#!/usr/bin/env bash
# Runs the whole test suite after setting up what it needs: the MNIST and Fashion-MNIST files
# under datasets/ (checked against datasets/SHA256SUMS) and a Python virtual environment in
# .venv with TensorBoard and safetensors for the interoperability tests. Safe to run again:
# each step is skipped when its result is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== datasets"
if ! cargo run --release --quiet -p grit-data --bin fetch-datasets -- --dir datasets mnist fashion-mnist; then
    # On a fresh machine apt has no package lists yet, so `apt-get download` cannot find
    # Fashion-MNIST's package; refresh them once and try again.
    echo "fetching failed; refreshing the apt package lists and retrying"
    apt-get update -qq
    cargo run --release --quiet -p grit-data --bin fetch-datasets -- --dir datasets mnist fashion-mnist
fi

echo "== python environment (.venv)"
if ! .venv/bin/python -c "import tensorboard, safetensors, numpy" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi

echo "== tests"
cargo test --workspace --release
