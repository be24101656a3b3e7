"""Tests of tfseg.training.distributed: strategy choice, errors, and a real two-worker training step.

Run as a script (`python test_distributed.py worker INDEX OUT_DIR`), this file is one worker of
the two-process MultiWorkerMirroredStrategy test; TF_CONFIG comes from the environment.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tfseg.errors import ConfigError, TfsegError
from tfseg.training import distributed
from tfseg.training.distributed import (DISTRIBUTE_CHOICES, HOROVOD_INSTALL, detect_kind, make_strategy,
                                        parse_tf_config, scale_learning_rate, shard_for_worker, workflow_strategy)

LEARNING_RATE = 0.1
GLOBAL_BATCH = 8
WORKER_TIMEOUT_S = 120


# ----------------------------------------------------------------- the shared tiny problem
def _problem():
    """A fixed global batch and fixed initial weights (the same in every process)."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(GLOBAL_BATCH, 4, 4, 1)).astype("float32")
    y = rng.normal(size=(GLOBAL_BATCH, 1)).astype("float32")
    return x, y


def _model():
    import keras

    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="tanh")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(7)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _flat(model):
    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def _one_step(strategy, dataset):
    """Build model + plain SGD under `strategy`, run one Trainer step, return the flat weights."""
    import keras

    from tfseg.training import Trainer

    with strategy.scope():
        model = _model()
        optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=0.0)
    trainer = Trainer(model, keras.losses.MeanSquaredError(), optimizer, strategy=strategy)
    history = trainer.fit(dataset, epochs=1, verbose=0)
    assert len(history["loss"]) == 1
    return _flat(model), trainer


def _worker_main(index, out_dir):
    """One worker: the global batch, sharded by TF (DATA policy) so this worker trains on its half."""
    import tensorflow as tf

    strategy = make_strategy("multiworker")
    assert strategy.num_replicas_in_sync == 2
    x, y = _problem()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
    seen = [np.concatenate([np.asarray(v) for v in strategy.experimental_local_results(batch[0])])
            for batch in strategy.experimental_distribute_dataset(dataset)]
    weights, trainer = _one_step(strategy, dataset)
    np.save(os.path.join(out_dir, f"weights{index}.npy"), weights)
    np.save(os.path.join(out_dir, f"seen{index}.npy"), np.concatenate(seen))
    with open(os.path.join(out_dir, f"chief{index}.json"), "w") as f:
        json.dump(bool(trainer.is_chief), f)


def _free_ports(n):
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(out_dir):
    """Start both workers concurrently; return (ok, combined output)."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ)
        for name in distributed.LAUNCHER_ENV_VARS:
            env.pop(name, None)
        env.update(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen([sys.executable, __file__, "worker", str(index), str(out_dir)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs, ok = [], True
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            out, _ = proc.communicate()
            out += "\n[timed out]"
        outputs.append(out)
        ok = ok and proc.returncode == 0
    return ok, "\n----\n".join(o[-3000:] for o in outputs)


@pytest.mark.slow
def test_two_workers_one_step_equals_single_process_step(tmp_path):
    import tensorflow as tf

    for attempt in range(2):  # collective setup on fresh ports can be flaky: retry once
        out_dir = tmp_path / f"attempt{attempt}"
        out_dir.mkdir()
        ok, output = _run_workers(out_dir)
        if ok:
            break
    assert ok, f"multi-worker run failed twice; last output:\n{output}"

    w0, w1 = (np.load(out_dir / f"weights{i}.npy") for i in range(2))
    np.testing.assert_array_equal(w0, w1)

    x, y = _problem()
    seen = np.concatenate([np.load(out_dir / f"seen{i}.npy") for i in range(2)])
    np.testing.assert_array_equal(seen, x)  # worker 0 had the first half, worker 1 the second

    assert [json.loads((out_dir / f"chief{i}.json").read_text()) for i in range(2)] == [True, False]

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    reference, _ = _one_step(tf.distribute.get_strategy(), dataset)
    assert not np.allclose(reference, _flat(_model())), "the step should change the weights"
    np.testing.assert_allclose(w0, reference, atol=1e-5, rtol=0)


# ----------------------------------------------------------------- strategy choice and errors
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TF_CONFIG", *distributed.LAUNCHER_ENV_VARS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def no_horovod(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod", None)  # import horovod.tensorflow -> ImportError
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)


def test_choices():
    assert DISTRIBUTE_CHOICES == ("auto", "none", "mirrored", "multiworker", "horovod")


def test_none_is_default_strategy(clean_env):
    import tensorflow as tf

    assert make_strategy("none") is tf.distribute.get_strategy()


def test_auto_without_environment(clean_env):
    import tensorflow as tf

    strategy = make_strategy("auto")
    if len(tf.config.list_physical_devices("GPU")) > 1:
        assert isinstance(strategy, tf.distribute.MirroredStrategy)
    else:
        assert strategy is tf.distribute.get_strategy()


def test_mirrored(clean_env):
    import tensorflow as tf

    strategy = make_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync >= 1


def test_unknown_kind():
    with pytest.raises(ConfigError, match="distribute must be one of"):
        make_strategy("tpu")


def test_detect_kind_from_environment():
    assert detect_kind({"HOROVOD_RANK": "0"}) == "horovod"
    assert detect_kind({"OMPI_COMM_WORLD_RANK": "1", "TF_CONFIG": "{}"}) == "horovod"
    assert detect_kind({"PMI_RANK": "0"}) == "horovod"
    assert detect_kind({"TF_CONFIG": '{"cluster": {}}'}) == "multiworker"


def test_multiworker_without_tf_config(clean_env):
    with pytest.raises(ConfigError, match="TF_CONFIG environment variable"):
        make_strategy("multiworker")


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ("[1, 2]", "TF_CONFIG must be a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "no 'cluster'"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}', "list of 'host:port'"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}', "needs a 'worker'"),
    ('{"cluster": {"worker": ["a:1"]}}', "no 'task'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief"}}', "not a job"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "out of range"),
])
def test_malformed_tf_config(clean_env, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_tf_config(text)
    clean_env.setenv("TF_CONFIG", text)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multiworker")


def test_parse_valid_tf_config():
    config = parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    assert config["cluster"]["worker"] == ["a:1", "b:2"]


def test_horovod_missing_says_how_to_install(clean_env, no_horovod):
    with pytest.raises(TfsegError, match="optional extra") as info:
        make_strategy("horovod")
    assert HOROVOD_INSTALL in str(info.value)
    assert "horovod==0.28.1" in str(info.value) and "2.18" in str(info.value)


def test_auto_under_horovodrun_without_horovod(clean_env, no_horovod):
    clean_env.setenv("HOROVOD_RANK", "0")
    with pytest.raises(TfsegError, match="pip install"):
        make_strategy("auto")


def test_horovod_trainer_imports_without_horovod(no_horovod):
    import keras

    from tfseg.training import Trainer
    from tfseg.training.distributed import HorovodTrainer

    assert issubclass(HorovodTrainer, Trainer)
    assert distributed.HOROVOD.trainer_class is HorovodTrainer
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(TfsegError, match="optional extra"):
        HorovodTrainer(model, keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.1))


def test_workflow_strategy(clean_env, no_horovod):
    import tensorflow as tf

    assert workflow_strategy("none") is tf.distribute.get_strategy()
    with pytest.raises(TfsegError, match="horovod"):
        workflow_strategy("horovod")


def test_workflow_strategy_refuses_horovod_when_installed(monkeypatch):
    monkeypatch.setattr(distributed, "import_horovod", lambda: object())
    assert make_strategy("horovod") is distributed.HOROVOD
    with pytest.raises(TfsegError, match="not wired into the workflows"):
        workflow_strategy("horovod")


def test_shard_for_worker():
    import tensorflow as tf

    data = tf.data.Dataset.range(7)
    shards = [[int(v) for v in shard_for_worker(data, 3, i)] for i in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert [int(v) for v in shard_for_worker(data, 1, 0)] == list(range(7))
    for bad in ((0, 0), (2, 2), (2, -1), (2.0, 0), (2, True)):
        with pytest.raises(ConfigError, match="shard_for_worker"):
            shard_for_worker(data, *bad)


def test_scale_learning_rate():
    assert scale_learning_rate(0.001, 8) == pytest.approx(0.008)
    assert scale_learning_rate(0.01, 1) == 0.01
    with pytest.raises(ConfigError, match="world_size"):
        scale_learning_rate(0.01, 0)
    with pytest.raises(ConfigError, match="learning_rate"):
        scale_learning_rate(0.0, 2)


def test_module_import_is_light():
    code = ("import sys, tfseg.training.distributed as d, tfseg.workflows.sunnybrook, tfseg.workflows.brats; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(d.DISTRIBUTE_CHOICES)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------- the --distribute flag
@pytest.mark.parametrize("module_name", ["sunnybrook", "brats"])
def test_distribute_flag_and_config_field(module_name):
    import importlib

    from tfseg.training.config import from_dict
    from tfseg.workflows.entry import resolve_config

    module = importlib.import_module(f"tfseg.workflows.{module_name}")
    config_class = module.SunnybrookConfig if module_name == "sunnybrook" else module.BratsConfig
    defaults = config_class()
    assert defaults.distribute == "none"
    assert resolve_config(module_name, []).distribute == "none"
    assert resolve_config(module_name, ["--distribute", "multiworker"]).distribute == "multiworker"
    with pytest.raises(SystemExit):
        resolve_config(module_name, ["--distribute", "tpu"])
    assert from_dict(config_class, {"distribute": "mirrored"}).distribute == "mirrored"
    with pytest.raises(ConfigError, match="distribute"):
        from_dict(config_class, {"distribute": "tpu"})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        _worker_main(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: test_distributed.py worker INDEX OUT_DIR")
