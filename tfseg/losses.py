"""Segmentation losses (soft Dice, Dice + cross-entropy, focal) and the target/probability helpers they share.

Input conventions (shared with `tfseg.metrics`):

- ``y_pred``: probabilities, or logits when ``from_logits=True``, shape ``(B, *spatial, C)``,
  channels last, 2D ``(B, H, W, C)`` or 3D ``(B, D, H, W, C)``.
- ``mode="softmax"`` (mutually exclusive classes, e.g. background / left ventricle):
  ``y_true`` is an integer label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` of any int or float
  dtype (float values are rounded), one-hot encoded internally to the ``C`` classes of ``y_pred``.
  Channel 0 is the background; Dice averages over channels ``1..C-1`` unless
  ``include_background=True``. Labels outside ``[0, C)`` one-hot to all zeros (they match no class).
- ``mode="sigmoid"`` (independent, possibly overlapping regions, e.g. BraTS WT/TC/ET):
  ``y_true`` is a binary ``(B, *spatial, C)`` target, one channel per region (``(B, *spatial)`` is
  accepted when ``C == 1``). Every channel counts; ``include_background`` is ignored.

Losses return one value per sample, shape ``(B,)``, so Keras' ``reduction`` and ``sample_weight``
work as usual. Everything is written with ``keras.ops``, so it runs eagerly, inside
``tf.function`` and under ``tf.distribute``.

Example:
    >>> import numpy as np
    >>> labels = np.zeros((1, 4, 4), "int32"); labels[0, :2, :2] = 1
    >>> perfect = np.eye(2, dtype="float32")[labels]          # one-hot probabilities
    >>> round(float(DiceLoss()(labels, perfect)), 4)
    0.0
"""
import keras
from keras import ops

from tfseg.errors import ConfigError

MODES = ("softmax", "sigmoid")
_SUPPORTED_CHANNEL_RANKS = "(B, *spatial, C)"


# --------------------------------------------------------------------------------------------
# Shared helpers: argument checks, targets, probabilities, class selection.
# --------------------------------------------------------------------------------------------

def check_mode(mode):
    """Return `mode` if it is "softmax" or "sigmoid", else raise `ConfigError`."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def spatial_axes(x):
    """The spatial axes of a channels-last batch `(B, *spatial, C)`: `(1, ..., ndim - 2)`."""
    return tuple(range(1, len(x.shape) - 1))


def _as_float(x):
    """`x` as a float32 or float64 tensor (half precision is widened: sums over a volume overflow it)."""
    x = ops.convert_to_tensor(x)
    if str(x.dtype) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def prepare_target(y_true, y_pred, mode):
    """Turn `y_true` into a float target with exactly the shape of `y_pred`.

    Args:
        y_true: softmax mode: integer label map `(B, *spatial)` or `(B, *spatial, 1)`;
            sigmoid mode: `(B, *spatial, C)` target (or `(B, *spatial)` when `C == 1`).
        y_pred: predictions `(B, *spatial, C)`; only its shape and dtype are used.
        mode: "softmax" (one-hot encode the labels) or "sigmoid" (cast as is).

    Returns:
        A tensor of `y_pred`'s shape and float dtype: one-hot labels (softmax) or the per-channel
        target values (sigmoid).

    Raises:
        ConfigError: the shapes of `y_true` and `y_pred` do not fit the mode.

    Example:
        >>> import numpy as np
        >>> t = prepare_target(np.array([[[0, 2]]]), np.zeros((1, 1, 2, 3), "float32"), "softmax")
        >>> ops.convert_to_numpy(t)[0, 0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    check_mode(mode)
    y_pred = _as_float(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    pred_shape, true_shape = tuple(y_pred.shape), tuple(y_true.shape)
    rank = len(pred_shape)
    num_classes = pred_shape[-1] if rank else None

    def mismatch(expected):
        return ConfigError(
            f"y_true shape {true_shape} does not fit y_pred shape {pred_shape} in mode {mode!r}: "
            f"expected {expected}")

    if rank < 3:
        raise ConfigError(f"y_pred must be channels last {_SUPPORTED_CHANNEL_RANKS} with at least one "
                          f"spatial axis, got shape {pred_shape}")
    if num_classes is None:
        raise ConfigError(f"the number of channels (last axis of y_pred) must be known, got {pred_shape}")

    if mode == "softmax":
        if num_classes < 2:
            raise ConfigError(f"mode 'softmax' needs at least 2 channels (background + classes), y_pred has "
                              f"{num_classes}; use mode='sigmoid' for a single-channel output")
        expected = "a label map (B, *spatial) or (B, *spatial, 1)"
        if len(true_shape) == rank:
            if true_shape[-1] not in (1, None):
                raise mismatch(expected)
            y_true = ops.squeeze(y_true, axis=-1)
        elif len(true_shape) != rank - 1:
            raise mismatch(expected)
        _check_spatial(tuple(y_true.shape), pred_shape[:-1], mismatch, expected)
        if "float" in str(y_true.dtype):
            y_true = ops.round(y_true)
        return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=y_pred.dtype)

    expected = f"a (B, *spatial, {num_classes}) target, one channel per region"
    if len(true_shape) == rank - 1 and num_classes == 1:
        y_true = ops.expand_dims(y_true, -1)
    elif len(true_shape) != rank:
        raise mismatch(expected)
    _check_spatial(tuple(y_true.shape), pred_shape, mismatch, expected)
    return ops.cast(y_true, y_pred.dtype)


def _check_spatial(true_shape, pred_shape, mismatch, expected):
    for t, p in zip(true_shape, pred_shape):
        if t is not None and p is not None and t != p:
            raise mismatch(expected)


def to_probabilities(y_pred, mode, from_logits=False):
    """Probabilities from `y_pred`: softmax/sigmoid of logits, or `y_pred` itself (as float)."""
    check_mode(mode)
    y_pred = _as_float(y_pred)
    if not from_logits:
        return y_pred
    return ops.softmax(y_pred, axis=-1) if mode == "softmax" else ops.sigmoid(y_pred)


def select_classes(per_class, mode, include_background=False):
    """Drop channel 0 (background) of `(..., C)` values in softmax mode unless `include_background`."""
    if mode == "softmax" and not include_background:
        return per_class[..., 1:]
    return per_class


def soft_dice(target, probs, smooth=1e-5, squared_denominator=False, batch_dice=False):
    """Per-sample, per-class soft Dice `(2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`.

    Args:
        target: float target `(B, *spatial, C)` (see `prepare_target`).
        probs: probabilities of the same shape.
        smooth: added to numerator and denominator; an empty class predicted empty scores 1.
        squared_denominator: use `sum(p**2) + sum(g**2)` in the denominator (Milletari's V-Net).
        batch_dice: sum over the batch as well as space (one Dice per class for the whole batch,
            repeated for every sample).

    Returns:
        Dice coefficients of shape `(B, C)`.
    """
    axes = spatial_axes(probs)
    if batch_dice:
        axes = (0,) + axes
    intersection = ops.sum(target * probs, axis=axes)
    if squared_denominator:
        denominator = ops.sum(ops.square(probs), axis=axes) + ops.sum(ops.square(target), axis=axes)
    else:
        denominator = ops.sum(probs, axis=axes) + ops.sum(target, axis=axes)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    if batch_dice:
        # (C,) -> (B, C): the same batch-level value for every sample.
        dice = dice + ops.zeros_like(ops.sum(target, axis=spatial_axes(target)))
    return dice


def _dice_options(mode, from_logits, include_background, smooth, squared_denominator, batch_dice):
    """Validated Dice options, shared by the loss classes (and their configs)."""
    check_mode(mode)
    if not smooth > 0:
        raise ConfigError(f"smooth must be > 0 (it keeps empty classes finite), got {smooth!r}")
    return {"mode": mode, "from_logits": bool(from_logits), "include_background": bool(include_background),
            "smooth": float(smooth), "squared_denominator": bool(squared_denominator),
            "batch_dice": bool(batch_dice)}


def _class_weights(class_weights):
    if class_weights is None:
        return None
    try:
        weights = [float(w) for w in class_weights]
    except (TypeError, ValueError):
        raise ConfigError(f"class_weights must be a list of numbers, got {class_weights!r}") from None
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"class_weights must be non-negative with a positive sum, got {weights}")
    return weights


# --------------------------------------------------------------------------------------------
# Functional forms.
# --------------------------------------------------------------------------------------------

def dice_loss(y_true, y_pred, mode="softmax", from_logits=False, include_background=False, smooth=1e-5,
              squared_denominator=False, batch_dice=False):
    """Soft Dice loss per sample: 1 - mean over classes of the soft Dice.

    Args:
        y_true: target, see the module docstring for the per-mode layout.
        y_pred: probabilities (or logits with `from_logits=True`), `(B, *spatial, C)`.
        mode: "softmax" or "sigmoid".
        from_logits: apply softmax/sigmoid to `y_pred` first.
        include_background: softmax mode only: also average over channel 0.
        smooth: added to numerator and denominator of each class's Dice.
        squared_denominator: square the terms of the denominator.
        batch_dice: compute each class's Dice over the whole batch.

    Returns:
        Loss values of shape `(B,)`, in `[0, 1]`.

    Example:
        >>> import numpy as np
        >>> labels = np.array([[[0, 1], [1, 1]]])                 # (1, 2, 2), 3 foreground pixels
        >>> probs = np.zeros((1, 2, 2, 2), "float32"); probs[..., 0] = 1; probs[0, 1, 1] = [0, 1]
        >>> round(float(dice_loss(labels, probs)[0]), 4)          # Dice = 2*1 / (1 + 3) = 0.5
        0.5
    """
    options = _dice_options(mode, from_logits, include_background, smooth, squared_denominator, batch_dice)
    target = prepare_target(y_true, y_pred, mode)
    probs = to_probabilities(y_pred, mode, options["from_logits"])
    dice = soft_dice(target, probs, options["smooth"], options["squared_denominator"], options["batch_dice"])
    return 1.0 - ops.mean(select_classes(dice, mode, options["include_background"]), axis=-1)


def cross_entropy(y_true, y_pred, mode="softmax", from_logits=False, class_weights=None):
    """Per-sample cross-entropy: categorical (softmax mode) or binary per channel (sigmoid mode).

    Args:
        y_true: target, see the module docstring.
        y_pred: probabilities (or logits with `from_logits=True`), `(B, *spatial, C)`.
        mode: "softmax" or "sigmoid".
        from_logits: `y_pred` holds logits (computed stably, without forming probabilities).
        class_weights: optional `C` non-negative weights. Softmax: each pixel weighs the weight of
            its true class and the loss is the weighted mean over pixels (as PyTorch's
            `CrossEntropyLoss(weight=...)`). Sigmoid: weighted mean over channels of each
            channel's mean binary cross-entropy.

    Returns:
        Loss values of shape `(B,)`.

    Example:
        >>> import numpy as np
        >>> probs = np.full((1, 1, 2, 2), 0.5, "float32")
        >>> round(float(cross_entropy(np.array([[[0, 1]]]), probs)[0]), 4)   # -log(0.5)
        0.6931
    """
    check_mode(mode)
    weights = _class_weights(class_weights)
    y_pred = _as_float(y_pred)
    target = prepare_target(y_true, y_pred, mode)
    axes = spatial_axes(y_pred)
    num_classes = y_pred.shape[-1]
    if weights is not None and len(weights) != num_classes:
        raise ConfigError(f"class_weights has {len(weights)} entries but y_pred has {num_classes} channels")
    if mode == "softmax":
        pixel_ce = ops.categorical_crossentropy(target, y_pred, from_logits=from_logits, axis=-1)
        if weights is None:
            return ops.mean(pixel_ce, axis=axes)
        pixel_w = ops.sum(target * ops.convert_to_tensor(weights, dtype=y_pred.dtype), axis=-1)
        total_w = ops.sum(pixel_w, axis=axes)
        return ops.sum(pixel_w * pixel_ce, axis=axes) / ops.maximum(total_w, keras.config.epsilon())
    channel_ce = ops.mean(ops.binary_crossentropy(target, y_pred, from_logits=from_logits), axis=axes)
    if weights is None:
        return ops.mean(channel_ce, axis=-1)
    w = ops.convert_to_tensor(weights, dtype=y_pred.dtype)
    return ops.sum(channel_ce * w, axis=-1) / ops.sum(w)


def focal_loss(y_true, y_pred, mode="softmax", gamma=2.0, alpha=None, from_logits=False):
    """Per-sample focal loss (Lin et al. 2017): cross-entropy down-weighted on well-classified pixels.

    Softmax mode: `-sum_c alpha_c (1 - p_c)^gamma t_c log p_c`, averaged over pixels (multiclass focal
    loss, as segmentation_models_pytorch's `FocalLoss(mode="multiclass")`). Sigmoid mode: binary focal
    loss per channel, `-[alpha t (1-p)^gamma log p + (1-alpha)(1-t) p^gamma log(1-p)]`, averaged over
    pixels and channels. `gamma=0` and no `alpha` give the plain cross-entropy.

    Args:
        y_true: target, see the module docstring.
        y_pred: probabilities (or logits with `from_logits=True`), `(B, *spatial, C)`.
        mode: "softmax" or "sigmoid".
        gamma: focusing exponent (>= 0).
        alpha: softmax: None or `C` per-class weights; sigmoid: None or one weight in [0, 1] of the
            positive term (the negative term weighs `1 - alpha`).
        from_logits: `y_pred` holds logits.

    Returns:
        Loss values of shape `(B,)`.

    Example:
        >>> import numpy as np
        >>> probs = np.full((1, 1, 2, 2), 0.5, "float32")
        >>> round(float(focal_loss(np.array([[[0, 1]]]), probs, gamma=2.0)[0]), 4)   # 0.25 * log(2)
        0.1733
    """
    check_mode(mode)
    if gamma < 0:
        raise ConfigError(f"gamma must be >= 0, got {gamma!r}")
    y_pred = _as_float(y_pred)
    target = prepare_target(y_true, y_pred, mode)
    axes = spatial_axes(y_pred)
    eps = keras.config.epsilon()
    if mode == "softmax":
        if alpha is not None and len(alpha) != y_pred.shape[-1]:
            raise ConfigError(f"alpha has {len(alpha)} entries but y_pred has {y_pred.shape[-1]} channels")
        if from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
            p = ops.exp(log_p)
        else:
            p = ops.clip(y_pred, eps, 1.0 - eps)
            log_p = ops.log(p)
        weight = ops.power(1.0 - p, gamma)
        if alpha is not None:
            weight = weight * ops.convert_to_tensor(_class_weights(alpha), dtype=y_pred.dtype)
        return ops.mean(-ops.sum(weight * target * log_p, axis=-1), axis=axes)
    if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"sigmoid focal alpha must be in [0, 1], got {alpha!r}")
    if from_logits:
        log_p, log_q = ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
        p = ops.sigmoid(y_pred)
    else:
        p = ops.clip(y_pred, eps, 1.0 - eps)
        log_p, log_q = ops.log(p), ops.log(1.0 - p)
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (float(alpha), 1.0 - float(alpha))
    pixel = -(a_pos * target * ops.power(1.0 - p, gamma) * log_p
              + a_neg * (1.0 - target) * ops.power(p, gamma) * log_q)
    return ops.mean(ops.mean(pixel, axis=axes), axis=-1)


def dice_cross_entropy_loss(y_true, y_pred, mode="softmax", dice_weight=1.0, ce_weight=1.0, class_weights=None,
                            from_logits=False, include_background=False, smooth=1e-5,
                            squared_denominator=False, batch_dice=False):
    """Per-sample `dice_weight * dice_loss + ce_weight * cross_entropy` (see those two functions).

    Example:
        >>> import numpy as np
        >>> labels = np.array([[[0, 1]]]); probs = np.eye(2, dtype="float32")[labels]
        >>> round(float(dice_cross_entropy_loss(labels, probs)[0]), 4)
        0.0
    """
    dice = dice_loss(y_true, y_pred, mode=mode, from_logits=from_logits, include_background=include_background,
                     smooth=smooth, squared_denominator=squared_denominator, batch_dice=batch_dice)
    ce = cross_entropy(y_true, y_pred, mode=mode, from_logits=from_logits, class_weights=class_weights)
    return float(dice_weight) * dice + float(ce_weight) * ce


# --------------------------------------------------------------------------------------------
# Keras loss classes.
# --------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="tfseg")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss, `1 - mean over classes of (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`.

    Sums run over the spatial axes of each sample (over batch and space with `batch_dice`); the
    mean runs over the foreground classes in softmax mode (all classes with
    `include_background=True`) and over all channels in sigmoid mode.

    Args:
        mode: "softmax" (label-map targets) or "sigmoid" (multi-channel binary targets).
        from_logits: `y_pred` holds logits.
        include_background: softmax mode: also count channel 0.
        smooth: added to numerator and denominator (> 0).
        squared_denominator: square the denominator terms (V-Net form).
        batch_dice: one Dice per class over the whole batch (the per-sample loss repeats it).
        reduction: Keras reduction of the per-sample values.
        name: the loss name.

    Example:
        >>> import numpy as np
        >>> labels = np.array([[[0, 1], [1, 1]]])
        >>> probs = np.zeros((1, 2, 2, 2), "float32"); probs[..., 0] = 1; probs[0, 1, 1] = [0, 1]
        >>> round(float(DiceLoss()(labels, probs)), 4)
        0.5
    """

    def __init__(self, mode="softmax", from_logits=False, include_background=False, smooth=1e-5,
                 squared_denominator=False, batch_dice=False, reduction="sum_over_batch_size", name="dice_loss"):
        super().__init__(name=name, reduction=reduction)
        self.options = _dice_options(mode, from_logits, include_background, smooth, squared_denominator,
                                     batch_dice)

    def call(self, y_true, y_pred):
        return dice_loss(y_true, y_pred, **self.options)

    def get_config(self):
        return {**super().get_config(), **self.options}


@keras.saving.register_keras_serializable(package="tfseg")
class DiceCrossEntropyLoss(keras.losses.Loss):
    """Soft Dice plus (optionally class-weighted) cross-entropy, per sample.

    Cross-entropy is categorical in softmax mode and binary per channel in sigmoid mode; it always
    covers every class (the background too), while the Dice term follows `include_background`.

    Args:
        mode: "softmax" or "sigmoid".
        dice_weight: factor of the Dice term.
        ce_weight: factor of the cross-entropy term.
        class_weights: optional per-class weights of the cross-entropy (see `cross_entropy`).
        from_logits: `y_pred` holds logits (both terms are computed stably from them).
        include_background, smooth, squared_denominator, batch_dice: as in `DiceLoss`.
        reduction: Keras reduction of the per-sample values.
        name: the loss name.

    Example:
        >>> import numpy as np
        >>> labels = np.array([[[0, 1]]])
        >>> loss = DiceCrossEntropyLoss(class_weights=[0.2, 1.0])
        >>> round(float(loss(labels, np.full((1, 1, 2, 2), 0.5, "float32"))), 4)  # 0.5 + log(2)
        1.1931
    """

    def __init__(self, mode="softmax", dice_weight=1.0, ce_weight=1.0, class_weights=None, from_logits=False,
                 include_background=False, smooth=1e-5, squared_denominator=False, batch_dice=False,
                 reduction="sum_over_batch_size", name="dice_cross_entropy_loss"):
        super().__init__(name=name, reduction=reduction)
        self.options = _dice_options(mode, from_logits, include_background, smooth, squared_denominator,
                                     batch_dice)
        if dice_weight < 0 or ce_weight < 0:
            raise ConfigError(f"dice_weight and ce_weight must be >= 0, got {dice_weight!r} and {ce_weight!r}")
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.class_weights = _class_weights(class_weights)

    def call(self, y_true, y_pred):
        return dice_cross_entropy_loss(y_true, y_pred, dice_weight=self.dice_weight, ce_weight=self.ce_weight,
                                       class_weights=self.class_weights, **self.options)

    def get_config(self):
        return {**super().get_config(), **self.options, "dice_weight": self.dice_weight,
                "ce_weight": self.ce_weight, "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="tfseg")
class FocalLoss(keras.losses.Loss):
    """Focal loss, optionally plus soft Dice (`dice_weight > 0`), per sample; see `focal_loss`.

    Args:
        mode: "softmax" (integer label maps, multiclass) or "sigmoid" (one channel per region).
        gamma: focusing exponent.
        alpha: per-class weights (softmax) or the positive-term weight (sigmoid); None for none.
        dice_weight: add `dice_weight * dice_loss` (0: focal loss alone, as in the W3 recipe paper).
        from_logits: `y_pred` holds logits.
        include_background: for the Dice term, as in `DiceLoss`.
        reduction: Keras reduction of the per-sample values.
        name: the loss name.

    Example:
        >>> import numpy as np
        >>> labels = np.array([[[0, 1]]]); probs = np.eye(2, dtype="float32")[labels]
        >>> round(float(FocalLoss()(labels, probs)), 4)
        0.0
    """

    def __init__(self, mode="softmax", gamma=2.0, alpha=None, dice_weight=0.0, from_logits=False,
                 include_background=False, reduction="sum_over_batch_size", name="focal_loss"):
        super().__init__(name=name, reduction=reduction)
        self.mode = check_mode(mode)
        if gamma < 0 or dice_weight < 0:
            raise ConfigError(f"gamma and dice_weight must be >= 0, got {gamma!r} and {dice_weight!r}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else (list(map(float, alpha)) if mode == "softmax" else float(alpha))
        self.dice_weight = float(dice_weight)
        self.from_logits = bool(from_logits)
        self.include_background = bool(include_background)

    def call(self, y_true, y_pred):
        value = focal_loss(y_true, y_pred, mode=self.mode, gamma=self.gamma, alpha=self.alpha,
                           from_logits=self.from_logits)
        if self.dice_weight:
            value = value + self.dice_weight * dice_loss(y_true, y_pred, mode=self.mode, from_logits=self.from_logits,
                                                         include_background=self.include_background)
        return value

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "gamma": self.gamma, "alpha": self.alpha,
                "dice_weight": self.dice_weight, "from_logits": self.from_logits,
                "include_background": self.include_background}


# --------------------------------------------------------------------------------------------
# Variational-autoencoder regularization (Myronenko 2018, arXiv 1810.11654).
# --------------------------------------------------------------------------------------------

#: The weights of the two VAE terms in Myronenko's loss `L = L_dice + 0.1 L_L2 + 0.1 L_KL`.
VAE_L2_WEIGHT = 0.1
VAE_KL_WEIGHT = 0.1


def reconstruction_l2(image, reconstruction):
    """Per-sample L2 reconstruction loss: the mean squared difference over voxels and channels.

    Myronenko writes `L_L2 = ||I_input - I_pred||_2^2`; like MONAI's `SegResNetVAE` (`mse_loss`),
    this takes the mean rather than the sum, so its scale does not depend on the crop size.

    Args:
        image: the network input `(B, *spatial, C)`.
        reconstruction: the VAE decoder's output, same shape.

    Returns:
        Loss values of shape `(B,)`.

    Raises:
        ConfigError: the two shapes differ.

    Example:
        >>> import numpy as np
        >>> image = np.zeros((1, 2, 2, 1), "float32"); recon = np.full((1, 2, 2, 1), 2.0, "float32")
        >>> float(reconstruction_l2(image, recon)[0])
        4.0
    """
    image, reconstruction = _as_float(image), _as_float(reconstruction)
    if len(image.shape) != len(reconstruction.shape) or not all(
            a is None or b is None or a == b for a, b in zip(image.shape, reconstruction.shape)):
        raise ConfigError(f"reconstruction shape {tuple(reconstruction.shape)} does not match image shape "
                          f"{tuple(image.shape)}")
    reconstruction = ops.cast(reconstruction, image.dtype)
    axes = tuple(range(1, len(image.shape)))
    return ops.mean(ops.square(image - reconstruction), axis=axes)


def kl_divergence(mean, log_var, num_voxels=None):
    """Per-sample KL term of Myronenko 2018 between N(mean, std^2) and N(0, 1).

    With `var = exp(log_var)` and the sum over the latent dimensions,

        L_KL = 1/N * sum(mean^2 + var - log(var) - 1)

    exactly as in the paper (section 2.2), where N is the number of image voxels
    (`num_voxels`, e.g. 160 * 192 * 128 for the paper's crop). The paper's form omits the 1/2
    of the textbook KL divergence; it is kept here so the paper's 0.1 weight means the same.
    Without `num_voxels`, N is the number of latent dimensions (a mean over them; MONAI's
    `SegResNetVAE` uses half that mean).

    Args:
        mean: latent means `(B, latent)`.
        log_var: latent log-variances `log(std^2)`, same shape.
        num_voxels: N; default the latent size.

    Returns:
        Loss values of shape `(B,)`; zero when mean = 0 and std = 1.

    Example:
        >>> import numpy as np
        >>> mean = np.array([[1.0, 0.0]], "float32"); log_var = np.zeros((1, 2), "float32")
        >>> float(kl_divergence(mean, log_var, num_voxels=4)[0])   # (1 + 1 - 0 - 1) / 4
        0.25
    """
    mean, log_var = _as_float(mean), _as_float(log_var)
    log_var = ops.cast(log_var, mean.dtype)
    if num_voxels is None:
        num_voxels = mean.shape[-1]
    if num_voxels is None or not num_voxels > 0:
        raise ConfigError(f"num_voxels must be a positive number, got {num_voxels!r}")
    terms = ops.square(mean) + ops.exp(log_var) - log_var - 1.0
    return ops.sum(terms, axis=-1) / float(num_voxels)


def vae_regularization(image, reconstruction, mean, log_var, l2_weight=VAE_L2_WEIGHT, kl_weight=VAE_KL_WEIGHT,
                       num_voxels=None):
    """Per-sample `l2_weight * reconstruction_l2 + kl_weight * kl_divergence` (the VAE part of the loss).

    Example:
        >>> import numpy as np
        >>> image = np.zeros((1, 2, 2, 1), "float32")
        >>> mean = np.array([[1.0, 0.0]], "float32"); log_var = np.zeros((1, 2), "float32")
        >>> round(float(vae_regularization(image, image + 1, mean, log_var, num_voxels=4)[0]), 4)
        0.125
    """
    if l2_weight < 0 or kl_weight < 0:
        raise ConfigError(f"l2_weight and kl_weight must be >= 0, got {l2_weight!r} and {kl_weight!r}")
    return (float(l2_weight) * reconstruction_l2(image, reconstruction)
            + float(kl_weight) * kl_divergence(mean, log_var, num_voxels))


def segresnet_vae_loss(y_true, probabilities, image, reconstruction, mean, log_var, l2_weight=VAE_L2_WEIGHT,
                       kl_weight=VAE_KL_WEIGHT, num_voxels=None, smooth=1e-5):
    """Myronenko's full per-sample loss: `soft Dice (sigmoid) + 0.1 * L_L2 + 0.1 * L_KL`.

    The SegResNet-VAE training model (`tfseg.models.segresnet_vae`) adds the VAE part itself
    (`vae_regularization`, as a model loss), so training it needs only
    `DiceLoss(mode="sigmoid")` on its `probabilities` output; this function states the whole
    objective in one place and computes it from the tensors involved.

    Args:
        y_true: binary region targets `(B, *spatial, C)`.
        probabilities: sigmoid outputs, same shape.
        image, reconstruction: the input and the VAE decoder's output.
        mean, log_var: the latent distribution `(B, latent)`.
        l2_weight, kl_weight: the VAE weights (0.1 each in the paper).
        num_voxels: N of the KL term (the image voxel count in the paper).
        smooth: the Dice smoothing term.

    Returns:
        Loss values of shape `(B,)`.

    Example:
        >>> import numpy as np
        >>> target = np.ones((1, 2, 2, 1), "float32"); image = np.zeros((1, 2, 2, 1), "float32")
        >>> mean = np.zeros((1, 2), "float32")
        >>> round(float(segresnet_vae_loss(target, target, image, image + 1, mean, mean)[0]), 4)
        0.1
    """
    dice = dice_loss(y_true, probabilities, mode="sigmoid", smooth=smooth)
    return dice + vae_regularization(image, reconstruction, mean, log_var, l2_weight, kl_weight, num_voxels)
