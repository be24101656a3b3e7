"""tf.data builders: decoded 2D samples to normalized, resized, cached, augmented, batched datasets.

Order of the stages (each one optional where it makes sense):
decoded arrays → normalize (per image) → resize (image bilinear, mask nearest) → gray→RGB →
cache → shuffle → augment (flips, small rotations, seeded) → batch → prefetch.

Example:
    >>> import numpy as np
    >>> images = [np.random.rand(64, 64).astype("float32") for _ in range(4)]
    >>> masks = [np.zeros((64, 64), "uint8") for _ in range(4)]
    >>> ds = segmentation_dataset(images, masks, image_size=(32, 32), batch_size=2, training=True, seed=1)
    >>> x, y = next(iter(ds))
    >>> tuple(x.shape), tuple(y.shape), y.dtype.name
    ((2, 32, 32, 1), (2, 32, 32), 'int32')
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tfseg.data.transforms.intensity import check_normalization, gray_to_rgb, normalize_intensity
from tfseg.data.transforms.spatial import random_flip_rotate, resize_pair
from tfseg.errors import ConfigError

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Augmentation2D:
    """Random 2D augmentation settings: flips with probability `flip_probability`, rotation in ±`max_degrees`."""

    flip_probability: float = 0.5
    vertical_flip: bool = True
    max_degrees: float = 10.0


def segmentation_dataset(images, masks, image_size, batch_size, training, seed=0, normalization="zscore",
                         channels=1, augmentation=None, cache=True, shuffle_buffer=None,
                         drop_remainder=False):
    """Build a tf.data pipeline over decoded 2D image/mask pairs.

    Args:
        images: sequence of float arrays `(H, W)` or `(H, W, C)`; sizes may differ between images.
        masks: sequence of integer label maps `(H, W)`, same spatial size as their image.
        image_size: `(height, width)` every sample is resized to.
        batch_size: samples per batch.
        training: shuffle and augment when True; keep order and skip augmentation when False.
        seed: seeds shuffling and augmentation (reproducible runs; different every epoch).
        normalization: per-image "zscore", "minmax" or "none" (see `transforms.intensity`).
        channels: 1 keeps grayscale; 3 repeats a grayscale channel (for RGB-pretrained encoders).
        augmentation: an `Augmentation2D`, or None for the default when training.
        cache: keep the preprocessed samples in memory after the first epoch.
        shuffle_buffer: defaults to the whole dataset.
        drop_remainder: drop a last incomplete batch (needed for some distribution setups).

    Returns:
        A `tf.data.Dataset` of `(image float32 (B, H, W, channels), mask int32 (B, H, W))`.
    """
    if len(images) != len(masks):
        raise ConfigError(f"got {len(images)} images but {len(masks)} masks")
    if not len(images):
        raise ConfigError("cannot build a dataset from zero samples")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels!r}")
    check_normalization(normalization)
    image_size = tuple(int(s) for s in image_size)
    in_channels = 1 if np.ndim(images[0]) == 2 else int(np.shape(images[0])[-1])

    def generate():
        for image, mask in zip(images, masks):
            image = np.asarray(image, np.float32)
            yield (image[..., None] if image.ndim == 2 else image), np.asarray(mask, np.int32)

    signature = (tf.TensorSpec((None, None, in_channels), tf.float32), tf.TensorSpec((None, None), tf.int32))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(images)))

    def preprocess(image, mask):
        image = normalize_intensity(image, normalization)
        image, mask = resize_pair(image, mask, image_size)
        if channels == 3:
            image = gray_to_rgb(image)
        image.set_shape(image_size + (channels,))
        mask.set_shape(image_size)
        return image, mask

    dataset = dataset.map(preprocess, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer or len(images), seed=seed, reshuffle_each_iteration=True)
        augmentation = augmentation or Augmentation2D()
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))

        def augment(pair, pair_seed):
            image, mask = random_flip_rotate(pair[0], pair[1], pair_seed, augmentation.flip_probability,
                                             augmentation.vertical_flip, augmentation.max_degrees)
            return image, mask

        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE)
