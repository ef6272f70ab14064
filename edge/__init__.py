"""Device runtime: numpy maths, metrics, image decoding, LiteRT interpreter, Annoy gallery, CLIs.

Never imports TensorFlow, train/ or export/.
"""

__version__ = "0.2.0"
