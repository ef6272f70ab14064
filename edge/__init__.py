"""Device runtime: numpy maths, metrics, image decoding, LiteRT interpreter, Annoy gallery, CLIs.

Never imports TensorFlow, train/ or export/.
"""

__version__ = "0.4.0"

import os

# numpy's OpenBLAS starts a thread per core for the gallery's (N x D) @ (D,) product, and those
# threads fight the interpreter's for the same cores: a 2,935-item exact search took 8.0 ms with
# them and 0.28 ms without on a busy 2-core machine (README, "Live camera"). Only effective when
# edge is imported before numpy, as in every edge command; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# OpenCV reads its decoder pixel limit once, when cv2 is imported: this package is imported before
# any edge module imports cv2, so every format OpenCV decodes is bounded (edge.images.MAX_PIXELS;
# tests/test_image_bombs.py checks the two agree). An explicit setting in the environment wins.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "40000000")
