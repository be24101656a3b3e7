"""Data-parallel scaling: training images/s of FCN-8s with 1 process and with N processes (2 by default).

    python benchmarks/bench_scaling.py [--processes 2] [--image-size 128] [--batch-size 4] [--steps 12]
                                       [--gpus] [--json out.json]

The model is the CPU-sized FCN-8s of `recipes/sunnybrook_fcn8s.py` (`tfseg.workflows.sunnybrook.CPU_DEFAULTS`: VGG16 encoder
at a quarter width, 256-wide fc6/fc7), trained by tfseg's `Trainer` on random images (this
measures the step, not the input pipeline). Each process trains on `--batch-size` images per step:

1. one process (no distribution);
2. N processes on this machine: Horovod (`horovodrun --gloo -np N`) when `horovod.tensorflow`
   imports, else `MultiWorkerMirroredStrategy` with N workers on 127.0.0.1.

Scaling efficiency = (N-process images/s) / (N x 1-process images/s). The first steps (tracing,
warm-up) are not timed. On a machine whose cores are shared by the two processes, as on a
2-core CI runner, the processes compete for the same cores and the efficiency is far below 1:
the figure then measures the communication overhead, not a speed-up. On a machine with 8 GPUs
(Horovod installed, see docs/distributed.md): `python benchmarks/bench_scaling.py --processes 8
--gpus --image-size 256 --batch-size 8` (each Horovod rank pins the GPU of its local rank; without
`--gpus` the GPUs are hidden and the benchmark runs on the CPU).

Writes `benchmarks/results/scaling.json` (or `--json`).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = "--child"


def child(args):
    """One process: train `args.steps` steps, time those after `args.warmup`, write images/s."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfseg.models import build_model
    from tfseg.training.distributed import workflow_distribution

    dist = workflow_distribution(args.kind)
    from tfseg.workflows.sunnybrook import CPU_DEFAULTS

    size = args.image_size
    spec = {"name": "fcn8s", "input_shape": (size, size, 1), "num_classes": 2, **CPU_DEFAULTS.model.options}
    with dist.scope():
        model = build_model(spec)
        optimizer = keras.optimizers.Adam(1e-4)
    # tf.distribute splits a global batch over the replicas; Horovod ranks read their own batches
    batch = args.batch_size * (dist.world_size if dist.kind == "multiworker" else 1)
    rng = np.random.default_rng(dist.rank)
    x = rng.normal(size=(batch, size, size, 1)).astype("float32")
    y = (rng.random((batch, size, size)) > 0.9).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    if dist.kind == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        data = data.with_options(options)
    trainer = dist.trainer(model, keras.losses.SparseCategoricalCrossentropy(), optimizer)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            if step == args.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    clock = Clock()
    trainer.fit(data, epochs=1, steps_per_epoch=args.steps, callbacks=[clock], verbose=0)
    timed = args.steps - args.warmup
    images_per_s = timed * args.batch_size * dist.world_size / clock.seconds
    if dist.is_chief:
        with open(args.out, "w") as f:
            json.dump({"images_per_s": images_per_s, "seconds": clock.seconds, "timed_steps": timed,
                       "processes": dist.world_size, "kind": dist.kind, "params": int(model.count_params())}, f)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(gpus=False):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for name in ("TF_CONFIG", "HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        env.pop(name, None)
    return env


def _child_args(args, kind, out):
    return [__file__, CHILD, "--kind", kind, "--out", out, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]


def run_single(args, out):
    subprocess.run([sys.executable, *_child_args(args, "none", out)], env=_env(args.gpus), check=True,
                   timeout=1800)


def run_many(args, out):
    """`args.processes` processes: Horovod if it imports, else MultiWorkerMirroredStrategy workers."""
    n = args.processes
    try:
        import horovod.tensorflow  # noqa: F401
        has_horovod = True
    except ImportError:
        has_horovod = False
    if has_horovod:
        launcher = Path(sys.executable).with_name("horovodrun")
        launcher = str(launcher) if launcher.exists() else shutil.which("horovodrun")
        subprocess.run([launcher, "--gloo", "-np", str(n), "-H", f"localhost:{n}", sys.executable,
                        *_child_args(args, "horovod", out)], env=_env(args.gpus), check=True, timeout=1800)
        return "horovod"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    procs = []
    for index in range(n):
        env = _env(args.gpus)
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen([sys.executable, *_child_args(args, "multiworker", out)], env=env))
    codes = [p.wait(timeout=1800) for p in procs]
    if any(codes):
        raise SystemExit(f"a MultiWorkerMirroredStrategy worker failed (exit codes {codes})")
    return "multiworker"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="processes of the distributed run (2)")
    parser.add_argument("--gpus", action="store_true", help="keep the GPUs visible (one per Horovod rank)")
    parser.add_argument("--image-size", type=int, default=128, help="square image side, a multiple of 32 (128)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per process per step (4)")
    parser.add_argument("--steps", type=int, default=12, help="training steps per run, warm-up included (12)")
    parser.add_argument("--warmup", type=int, default=3, help="first steps not timed (3)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "scaling.json"))
    parser.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if not 0 <= args.warmup < args.steps:
        parser.error("need 0 <= --warmup < --steps")
    if args.processes < 2:
        parser.error("need --processes >= 2")
    with tempfile.TemporaryDirectory() as tmp:
        one, two = os.path.join(tmp, "one.json"), os.path.join(tmp, "many.json")
        run_single(args, one)
        backend = run_many(args, two)
        single, pair = (json.loads(Path(p).read_text()) for p in (one, two))
    import tensorflow as tf

    n = args.processes
    result = {
        "model": "fcn8s (tfseg.workflows.sunnybrook CPU_DEFAULTS)", "params": single["params"],
        "image_size": args.image_size, "batch_per_process": args.batch_size, "timed_steps": single["timed_steps"],
        f"backend_{n}proc": backend, "tensorflow": tf.__version__, "cpu_cores": os.cpu_count(),
        "images_per_s_1proc": round(single["images_per_s"], 2), f"images_per_s_{n}proc": round(pair["images_per_s"], 2),
        "scaling_efficiency": round(pair["images_per_s"] / (n * single["images_per_s"]), 3),
        "device": "gpu" if args.gpus else "cpu",
        "note": "on a CPU the processes share the machine's cores, so efficiency < 1 shows overhead, "
                "not what separate devices would give",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
