"""tf_flowers through tensorflow-datasets, unpacked once into the same <class>/<image> layout.

Needs a network the first time (``tfds.load`` downloads the archive). Offline, pass a local
folder instead (``--data-dir``); tests never call this module's download.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

DATASET = "tf_flowers"
DONE_MARKER = ".complete"


def materialize_tfds_folder(cache_dir: Path, name: str = DATASET) -> Path:
    """Downloads ``name`` with ``tfds.load`` and writes ``<cache>/<name>/<class>/<index>.jpg``.

    The JPEG bytes are written unchanged (``SkipDecoding``). The folder is built under a
    temporary name and renamed when complete, so an interrupted download is never mistaken for a
    data set.

    Returns:
      The class-folder root, ready for :func:`train.data.list_images`.
    """
    import tensorflow_datasets as tfds

    cache_dir = Path(cache_dir)
    target = cache_dir / name
    if (target / DONE_MARKER).exists():
        return target
    log.info("downloading %s with tensorflow-datasets into %s", name, cache_dir)
    dataset, info = tfds.load(
        name,
        split="train",
        data_dir=str(cache_dir / "tfds"),
        with_info=True,
        decoders={"image": tfds.decode.SkipDecoding()},
        shuffle_files=False,
    )
    class_names = info.features["label"].names
    partial = cache_dir / f"{name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    for index, example in enumerate(tfds.as_numpy(dataset)):
        class_dir = partial / class_names[int(example["label"])]
        class_dir.mkdir(parents=True, exist_ok=True)
        (class_dir / f"{index:05d}.jpg").write_bytes(example["image"])
    (partial / DONE_MARKER).write_text("ok\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target
