"""tfseg.utils: small helpers shared by every stage (no TensorFlow import at module load).

- `atomic`: write files, JSON, folders and Keras models so nothing is ever left half-written;
- `problems`: the `on_error` policy ("raise" or "skip") and the `ProblemLog` of bad records.
"""
from tfseg.utils.atomic import (  # noqa: F401
    atomic_path,
    atomic_save_model,
    atomic_write_json,
    atomic_write_text,
    model_without_optimizer,
)
