"""Device runtime: numpy maths, metrics, image decoding, LiteRT interpreter, Annoy gallery, CLIs.

Never imports TensorFlow, train/ or export/.
"""

import os as _os

# OpenCV reads its decoder pixel limit once, when cv2 is imported: this package is imported before
# any edge module imports cv2, so every format OpenCV decodes is bounded (edge.images.MAX_PIXELS;
# tests/test_image_bombs.py checks the two agree). An explicit setting in the environment wins.
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "40000000")
