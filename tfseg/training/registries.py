"""Losses, optimizers, learning-rate schedules and training metrics picked by name.

Every workflow builds these from its config through the functions below, so `"loss": "focal_dice"`
or `"lr_schedule": "poly"` means the same thing in every JSON config. The tables are plain dicts:
a new loss is one entry.

Example:
    >>> type(make_loss("focal_dice", mode="softmax")).__name__
    'FocalLoss'
    >>> [m.name for m in make_metrics(("dice",), ("WT", "TC", "ET"), mode="sigmoid")]
    ['dice_wt', 'dice_tc', 'dice_et', 'dice']
"""
from tfseg.errors import ConfigError


def _dice(mode, batch_dice, gamma):
    from tfseg.losses import DiceLoss

    return DiceLoss(mode=mode, batch_dice=batch_dice)


def _dice_squared(mode, batch_dice, gamma):
    from tfseg.losses import DiceLoss

    return DiceLoss(mode=mode, batch_dice=batch_dice, squared_denominator=True)


def _dice_ce(mode, batch_dice, gamma):
    from tfseg.losses import DiceCrossEntropyLoss

    return DiceCrossEntropyLoss(mode=mode, batch_dice=batch_dice)


def _ce(mode, batch_dice, gamma):
    if mode == "softmax":
        import keras

        return keras.losses.SparseCategoricalCrossentropy()
    from tfseg.losses import DiceCrossEntropyLoss

    return DiceCrossEntropyLoss(mode=mode, dice_weight=0.0)


def _focal(mode, batch_dice, gamma):
    from tfseg.losses import FocalLoss

    return FocalLoss(mode=mode, gamma=gamma, dice_weight=0.0)


def _focal_dice(mode, batch_dice, gamma):
    from tfseg.losses import FocalLoss

    return FocalLoss(mode=mode, gamma=gamma, dice_weight=1.0)


#: Loss name -> `fn(mode, batch_dice, gamma)`. "dice_squared" is the V-Net / Myronenko soft Dice
#: (squared terms in the denominator); "dice_bce" and "bce" are the sigmoid spellings of "dice_ce"
#: and "ce" (cross-entropy is binary in sigmoid mode).
LOSSES = {"dice": _dice, "dice_squared": _dice_squared, "dice_ce": _dice_ce, "dice_bce": _dice_ce,
          "ce": _ce, "bce": _ce, "focal": _focal, "focal_dice": _focal_dice}


def make_loss(name, mode="softmax", batch_dice=False, gamma=2.0):
    """The training loss called `name` (see `LOSSES`).

    Args:
        name: a key of `LOSSES`.
        mode: "softmax" (label maps) or "sigmoid" (binary channels).
        batch_dice: Dice over the whole batch instead of per sample (stable with many empty samples).
        gamma: the focusing parameter of the focal losses.

    Returns:
        A `keras.losses.Loss`.
    """
    if name not in LOSSES:
        raise ConfigError(f"train.loss: must be one of {', '.join(LOSSES)}, got {name!r}")
    return LOSSES[name](mode, batch_dice, gamma)


def _adam(rate, weight_decay):
    import keras

    return keras.optimizers.Adam(rate, weight_decay=weight_decay or None)


def _adamw(rate, weight_decay):
    import keras

    return keras.optimizers.AdamW(rate, weight_decay=weight_decay)


def _sgd(rate, weight_decay):
    import keras

    return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=weight_decay or None)


#: Optimizer name -> `fn(learning_rate_or_schedule, weight_decay)`.
OPTIMIZERS = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def _constant(rate, total_steps, steps_per_epoch, decay):
    return rate


def _cosine(rate, total_steps, steps_per_epoch, decay):
    import keras

    return keras.optimizers.schedules.CosineDecay(rate, total_steps, alpha=0.05)


def _poly(rate, total_steps, steps_per_epoch, decay):
    import keras

    return keras.optimizers.schedules.PolynomialDecay(rate, total_steps, rate * 0.01, power=0.9)


def _exponential(rate, total_steps, steps_per_epoch, decay):
    import keras

    return keras.optimizers.schedules.ExponentialDecay(rate, decay_steps=steps_per_epoch, decay_rate=decay,
                                                       staircase=True)


#: Schedule name -> `fn(rate, total_steps, steps_per_epoch, lr_decay)`: "poly" is (1 - t/T)^0.9 down
#: to 1% of the start (Myronenko 2018), "exponential" multiplies by `lr_decay` once per epoch (rmldnn).
SCHEDULES = {"constant": _constant, "cosine": _cosine, "poly": _poly, "exponential": _exponential}


def make_optimizer(train, steps_per_epoch, learning_rate=None):
    """The optimizer of a `TrainSection`, with its schedule over the whole run and loss scaling if needed.

    Args:
        train: a `tfseg.workflows.sections.TrainSection` (optimizer, learning_rate, weight_decay,
            lr_schedule, lr_decay, epochs, mixed_precision).
        steps_per_epoch: optimizer steps in one epoch.
        learning_rate: the starting rate (e.g. scaled by the number of Horovod processes);
            default `train.learning_rate`.

    Returns:
        A `keras.optimizers.Optimizer` (a `LossScaleOptimizer` under mixed precision).

    Example:
        >>> from tfseg.workflows.sections import TrainSection
        >>> opt = make_optimizer(TrainSection(optimizer="adamw", weight_decay=1e-4), steps_per_epoch=10)
        >>> type(opt).__name__, float(opt.weight_decay)
        ('AdamW', 0.0001)
    """
    for field, table in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES)):
        if getattr(train, field) not in table:
            raise ConfigError(f"train.{field}: must be one of {', '.join(table)}, got {getattr(train, field)!r}")
    rate = train.learning_rate if learning_rate is None else learning_rate
    steps = max(1, int(steps_per_epoch))
    schedule = SCHEDULES[train.lr_schedule](rate, max(1, int(train.epochs) * steps), steps, train.lr_decay)
    optimizer = OPTIMIZERS[train.optimizer](schedule, float(train.weight_decay))
    return loss_scaled(optimizer, train.mixed_precision)


def loss_scaled(optimizer, enabled):
    """`keras.optimizers.LossScaleOptimizer(optimizer)` under mixed precision, else `optimizer` itself."""
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer) if enabled else optimizer


def _score_class(score):
    from tfseg.metrics import DiceScore, IoUScore, PrecisionScore, RecallScore

    return {"dice": DiceScore, "iou": IoUScore, "precision": PrecisionScore, "recall": RecallScore}[score]


#: Training-metric names: confusion scores per class and their mean, and pixel accuracy.
METRICS = ("dice", "iou", "precision", "recall", "pixel_accuracy")


def make_metrics(scores, class_names, mode="softmax"):
    """Training metrics by name: each score per class (`dice_wt`) and over the classes (`dice`).

    Args:
        scores: names from `METRICS`.
        class_names: the output channels' names; in softmax mode the first is the background and
            is not scored.
        mode: "softmax" or "sigmoid".

    Returns:
        A list of Keras metrics. With one scored class a score is named plainly (`dice`); with
        several, `<score>_<class>` for each and `<score>` for their mean. "pixel_accuracy" is one
        metric over all pixels.
    """
    from tfseg.metrics import PixelAccuracy

    unknown = [s for s in scores if s not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
    first = 1 if mode == "softmax" else 0
    scored = list(enumerate(class_names))[first:]
    metrics = []
    for score in scores:
        if score == "pixel_accuracy":
            metrics.append(PixelAccuracy(name="pixel_accuracy"))
            continue
        cls = _score_class(score)
        if len(scored) == 1:
            metrics.append(cls(num_classes=len(class_names), class_id=scored[0][0], mode=mode, name=score))
            continue
        metrics += [cls(num_classes=len(class_names), class_id=i, mode=mode, name=f"{score}_{name.lower()}")
                    for i, name in scored]
        metrics.append(cls(num_classes=len(class_names), mode=mode, name=score))
    return metrics
