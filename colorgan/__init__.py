"""colorgan: colorize black-and-white photographs with a conditional GAN (Keras, CIE Lab)."""
import os

# TensorFlow leaves oneDNN off on CPUs without AVX-512 (such as AVX2 Zen 3), where its convolution
# gradients then run at a third of the forward's speed; on, the pix2pix train step is 1.5x faster
# (BENCHMARKS.md). Only takes effect when colorgan is imported before TensorFlow, as the scripts do.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
