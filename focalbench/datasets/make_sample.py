"""Build the shipped ``sample`` dataset from the 2018 DSB stage-1 training zip (CC0).

    python -m focalbench.datasets.make_sample /path/to/stage1_train.zip

Takes 48 images chosen with ``numpy.random.default_rng(2018)`` from the 670, merges each image's
per-nucleus masks (the ``dsb2018`` converter), resizes images (area) and masks (nearest) to
128×128, and writes a prepared dataset into ``focalbench/data/sample/`` with the images stored as
PNG. The result is well under 2 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

import focalbench
from focalbench.datasets.catalog import get_spec
from focalbench.datasets.convert import match_layout, read_record
from focalbench.datasets.prepared import (
    PreparedWriter,
    decode_image,
    resize_image,
    resize_mask,
    sample_folder,
)
from focalbench.datasets.sources import SourceTree, sha256_file

N_IMAGES, SIZE, SEED = 48, (128, 128), 2018


def make_sample(zip_path: Path, out: Path) -> dict:
    spec = get_spec("dsb2018")
    with SourceTree(zip_path) as tree:
        records = match_layout(spec, tree)
        chosen = sorted(
            np.random.default_rng(SEED).choice(len(records), N_IMAGES, replace=False).tolist()
        )
        writer = PreparedWriter(out, channels=3, with_fov=False)
        for i in chosen:
            raw, mask, _ = read_record(spec, tree, records[i])
            small = resize_image(decode_image(raw, 3), SIZE).transpose(1, 2, 0)[
                :, :, ::-1
            ]  # RGB -> BGR for cv2
            ok, png = cv2.imencode(
                ".png", np.ascontiguousarray(small), [cv2.IMWRITE_PNG_COMPRESSION, 9]
            )
            assert ok
            writer.add(
                records[i].id,
                png.tobytes(),
                resize_mask(mask.astype(np.uint8), SIZE) > 0,
                None,
                None,
            )
    return writer.finish(
        {
            "name": "sample",
            "version": focalbench.__version__,
            "sources": {zip_path.name: sha256_file(zip_path)},
            "preparation": {
                "from": "dsb2018 stage1_train.zip",
                "n": N_IMAGES,
                "seed": SEED,
                "size": list(SIZE),
            },
        }
    )


if __name__ == "__main__":
    meta = make_sample(Path(sys.argv[1]), sample_folder())
    print(
        f"wrote {meta['n_images']} images to {sample_folder()}; foreground {meta['foreground_pct']:.1f} %"
    )
