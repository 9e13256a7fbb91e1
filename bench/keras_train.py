"""Train a benchmark model on MNIST with Keras 3 and print one JSON line of results.

This is the Keras side of bench/run.py, which runs it next to the grit-bench binary. The
backend comes from KERAS_BACKEND (tensorflow or jax). The data is read from the raw MNIST IDX
files in <workspace>/datasets/mnist, never downloaded. Like grit-bench, it trains without
validation, with progress output off, and evaluates the test set in batches of 1000.

Usage:
    KERAS_BACKEND=jax python keras_train.py --model mlp|cnn [--epochs N] [--batch-size B]
        [--hidden H] [--seed S] [--threads N] [--data DIR]
"""

import argparse
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

EVALUATE_BATCH_SIZE = 1000
WORKSPACE = Path(__file__).resolve().parent.parent
IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], required=True)
    parser.add_argument("--epochs", type=int, help="default: 3 for mlp, 2 for cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, help="hidden units of the mlp (default: 128)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads",
        type=int,
        help="thread count: sets TensorFlow's intra-op and inter-op pools. For JAX only 1 has "
        "an effect here (through XLA_FLAGS), so limit it with CPU affinity as run.py does",
    )
    parser.add_argument("--data", type=Path, default=WORKSPACE / "datasets" / "mnist")
    args = parser.parse_args(argv)
    if args.model == "cnn" and args.hidden is not None:
        parser.error("--hidden applies to the mlp only")
    if args.model == "mlp" and args.hidden is None:
        args.hidden = 128
    if args.epochs is None:
        args.epochs = 3 if args.model == "mlp" else 2
    for name in ("epochs", "batch_size", "hidden", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def read_idx(path):
    """Read an IDX file (raw, or gzip-compressed with a .gz suffix) into a numpy array."""
    import numpy as np

    if not path.exists() and path.with_name(path.name + ".gz").exists():
        path = path.with_name(path.name + ".gz")
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: fetch MNIST with "
            "`cargo run --release -p grit-data --bin fetch-datasets -- --dir datasets mnist`"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: invalid magic number {raw[:4]!r}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder, channel_axis):
    """Return (x_train, y_train, x_test, y_test) as float32 images in [0, 1] and int32 labels."""
    import numpy as np

    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte").astype(np.float32) / 255.0
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte").astype(np.int32)
        if channel_axis:
            images = np.expand_dims(images, -1)
        splits += [images, labels]
    return tuple(splits)


def configure_threads(backend, threads):
    """Limit the backend's threads; must run before the backend is imported."""
    if threads is None:
        return
    if backend == "jax" and threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()


def build_model(keras, args):
    from keras import layers

    if args.model == "mlp":
        stack = [
            keras.Input((28, 28)),
            layers.Flatten(),
            layers.Dense(args.hidden, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    else:
        # Keras's "Simple MNIST convnet" example.
        stack = [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    model = keras.Sequential(stack)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def backend_details(backend, threads):
    """Return the backend's version and the thread settings in effect."""
    if backend == "tensorflow":
        import tensorflow as tf

        if threads is not None:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        return {
            "backend_version": tf.__version__,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        }
    if backend == "jax":
        import jax

        return {
            "backend_version": jax.__version__,
            "jax_devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS"),
        }
    return {"backend_version": None}


def blas_details():
    """Describe numpy's BLAS (which kernel OpenBLAS picked, and its threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [
        {key: pool.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
        for pool in threadpool_info()
    ]


def make_epoch_timer(keras):
    """Return a Keras callback that records each epoch's wall time, loss and accuracy."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.started = None
            self.seconds, self.losses, self.accuracies = [], [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)
            logs = logs or {}
            self.losses.append(float(logs.get("loss", float("nan"))))
            self.accuracies.append(float(logs.get("accuracy", float("nan"))))

    return EpochTimer()


def main(argv):
    args = parse_args(argv)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    configure_threads(backend, args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import_start = time.perf_counter()
    import numpy as np
    import keras

    details = backend_details(backend, args.threads)
    import_seconds = time.perf_counter() - import_start

    load_start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_mnist(args.data, channel_axis=args.model == "cnn")
    load_seconds = time.perf_counter() - load_start

    # NOTE: with TensorFlow installed this imports and seeds it even under the JAX backend,
    # so the JAX runs' import time and memory include TensorFlow's.
    keras.utils.set_random_seed(args.seed)
    model = build_model(keras, args)
    timer = make_epoch_timer(keras)

    fit_start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[timer],
    )
    fit_seconds = time.perf_counter() - fit_start

    evaluate_start = time.perf_counter()
    test_loss, test_accuracy = model.evaluate(
        x_test, y_test, batch_size=EVALUATE_BATCH_SIZE, verbose=0
    )
    evaluate_seconds = time.perf_counter() - evaluate_start

    result = {
        "framework": "keras",
        "framework_version": keras.__version__,
        "backend": keras.backend.backend(),
        **details,
        "model": args.model,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seed": args.seed,
        "params": model.count_params(),
        "threads": args.threads,
        "jit_compile": bool(model.jit_compile),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": blas_details(),
        "import_seconds": import_seconds,
        "load_seconds": load_seconds,
        "fit_seconds": fit_seconds,
        "evaluate_seconds": evaluate_seconds,
        "epoch_seconds": timer.seconds,
        "train_loss": timer.losses,
        "train_accuracy": timer.accuracies,
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
