"""Makes the shared inputs on x86: the video that stands in for a camera and the probe tensors.

    python -m benchmarks.device_check.prepare --bundle B --plan INPUTS_DIR

Writes ``INPUTS_DIR/video.avi`` (the plan's frames, MJPG as a USB webcam sends them, 320x240)
and ``INPUTS_DIR/tensors.npy`` ((N, H, W, 3) uint8: the plan's tensor images read and resized by
``edge`` on this machine), so both sides can run the identical tensors through the interpreter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

VIDEO_SIZE = (320, 240)
VIDEO_FPS = 10.0


def write_video(frames: list[str], path: Path) -> int:
    """Writes each image as one frame; returns how many frames were written."""
    import cv2

    from edge.images import read_image
    from edge.preprocess import resize_image

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, VIDEO_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MJPG video to {path}")
    try:
        for image in frames:
            rgb = resize_image(read_image(image), VIDEO_SIZE[1], VIDEO_SIZE[0])
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return len(frames)


def model_tensors(bundle: Path, images: list[str]):
    """The (N, H, W, 3) uint8 inputs ``edge`` makes of ``images`` for this bundle's model."""
    import numpy as np

    from edge.images import read_image
    from edge.manifest import read_manifest
    from edge.preprocess import resize_image

    spec = read_manifest(bundle).input
    if spec.dtype != "uint8":
        raise ValueError(f"the probe feeds uint8 pixels; this bundle's input is {spec.dtype}")
    return np.stack([resize_image(read_image(image), spec.height, spec.width) for image in images])


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from benchmarks.device_check.inputs import read_plan

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True, help="folder with plan.json; outputs go there")
    args = parser.parse_args(argv)
    plan = read_plan(args.plan)
    count = write_video(plan.frames, args.plan / "video.avi")
    np.save(args.plan / "tensors.npy", model_tensors(args.bundle, plan.tensors), allow_pickle=False)
    print(f"wrote {count} video frames and {len(plan.tensors)} tensors to {args.plan}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
