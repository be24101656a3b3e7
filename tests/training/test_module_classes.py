"""HorovodTrainer, WarmupSchedule and LearningRateWarmup are module-level classes; importing them
needs no Horovod, and the schedule is a registered Keras serializable as soon as its module loads."""
import os
import subprocess
import sys

import keras
import pytest

from tfseg.training import Trainer, distributed
from tfseg.training.horovod import HorovodTrainer
from tfseg.training.warmup import LearningRateWarmup, WarmupSchedule, warmup_factor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_classes_are_module_level():
    for cls, module in ((HorovodTrainer, "tfseg.training.horovod"), (WarmupSchedule, "tfseg.training.warmup"),
                        (LearningRateWarmup, "tfseg.training.warmup")):
        assert cls.__module__ == module and cls.__qualname__ == cls.__name__
    assert issubclass(HorovodTrainer, Trainer)
    assert distributed.HorovodTrainer is HorovodTrainer
    assert distributed.HOROVOD.trainer_class is HorovodTrainer


def test_warmup_factor_by_hand():
    assert [warmup_factor(s, 4, 4) for s in (0, 2, 4, 9)] == [0.25, 0.625, 1.0, 1.0]
    assert warmup_factor(0, 0, 8) == 1.0


@pytest.mark.slow
def test_schedule_registered_in_a_fresh_process_without_horovod():
    code = ("import sys\n"
            "import tfseg.training.distributed\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'horovod') if m in sys.modules]\n"
            "import keras, tfseg.training.horovod, tfseg.training.warmup\n"
            "print(heavy, keras.saving.get_registered_object('tfseg>WarmupSchedule').__module__,"
            " 'horovod' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[] tfseg.training.warmup False"


def test_schedule_round_trip():
    schedule = WarmupSchedule(keras.optimizers.schedules.PolynomialDecay(0.2, 10, 0.02), warmup_steps=5, world_size=2)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(again, WarmupSchedule)
    assert float(again(0)) == float(schedule(0)) == pytest.approx(0.1)
    assert float(again(5)) == pytest.approx(float(keras.optimizers.schedules.PolynomialDecay(0.2, 10, 0.02)(5)))
