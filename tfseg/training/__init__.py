"""tfseg.training: the training loop, checkpoints and callbacks.

The names below are imported on first use, so `import tfseg.training.config` stays light.

- `Trainer`, `NonFiniteLossError`, `set_seed`, `is_chief` (trainer.py): the distribution-ready loop;
- `CheckpointManager` (checkpoint.py): resumable epoch checkpoints;
- `enable_determinism`, `deterministic_options` (determinism.py): bit-identical same-seed runs;
- `EpochCheckpoint`, `TensorBoardLogger`, `default_callbacks`, `current_learning_rate` (callbacks.py).
"""
from tfseg.utils.lazy import lazy_attributes

_EXPORTS = {
    "Trainer": "trainer",
    "NonFiniteLossError": "trainer",
    "set_seed": "trainer",
    "is_chief": "trainer",
    "CheckpointManager": "checkpoint",
    "enable_determinism": "determinism",
    "deterministic_options": "determinism",
    "EpochCheckpoint": "callbacks",
    "TensorBoardLogger": "callbacks",
    "default_callbacks": "callbacks",
    "current_learning_rate": "callbacks",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_attributes(globals(),
                                       {name: f"tfseg.training.{module}" for name, module in _EXPORTS.items()})
