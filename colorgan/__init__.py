"""colorgan: colorize black-and-white photographs with a conditional GAN (Keras, CIE Lab)."""
__version__ = "0.1.0"
