"""`colorgan colorize` on a folder of large photos: seconds per photo amortised over the folder, and the
command's peak memory.

    python benchmarks/colorize.py                       # 12-megapixel JPEGs (4000x3000), the shipped model
    python benchmarks/colorize.py --megapixels=2 --photos=3 --format=png   # other sizes and outputs

The photos are real ones (skimage's), upscaled to the size asked and saved as JPEG quality 90. The
command runs in a child process, twice: on one photo and on the whole folder, so that the difference
is the cost of the extra photos with start-up (TensorFlow, the model) taken out. Peak memory is the
child's maximum resident set (`ru_maxrss`) over the folder run.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model to use (default: the shipped one).")
flags.DEFINE_integer("photos", 6, "Photos in the folder.")
flags.DEFINE_float("megapixels", 12.0, "Size of each photo, at 4:3.")
flags.DEFINE_string("format", "same", "colorize's --format.")
flags.DEFINE_integer("batch_size", 8, "colorize's --batch_size.")

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def make_folder(folder, count, megapixels):
    import skimage.data
    from PIL import Image
    width = int(round(np.sqrt(megapixels * 1e6 * 4 / 3)))
    height = int(round(width * 3 / 4))
    for i in range(count):
        photo = getattr(skimage.data, SKIMAGE_PHOTOS[i % len(SKIMAGE_PHOTOS)])()
        Image.fromarray(photo).resize((width, height), Image.BICUBIC).save(
            os.path.join(folder, f"photo_{i:02d}.jpg"), quality=90)
    return width, height


def run_colorize(inputs, output_dir):
    """(wall seconds, colorize's summary line) of one `colorgan colorize` child process."""
    command = [sys.executable, "-m", "colorgan", "colorize", *inputs, f"--output_dir={output_dir}",
               f"--format={FLAGS.format}", f"--batch_size={FLAGS.batch_size}", "--noprogress", "--overwrite"]
    if FLAGS.model:
        command.append(f"--model={FLAGS.model}")
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.communicate()[0]
    seconds = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"colorize failed:\n{output[-2000:]}")
    return seconds, output.strip().splitlines()[-1]


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "in")
        os.makedirs(folder)
        width, height = make_folder(folder, FLAGS.photos, FLAGS.megapixels)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
        one, _ = run_colorize(files[:1], os.path.join(tmp, "out1"))
        whole, line = run_colorize([folder], os.path.join(tmp, "out"))
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the larger of the two runs
        outputs = [os.path.join(tmp, "out", f) for f in sorted(os.listdir(os.path.join(tmp, "out")))
                   if not f.startswith(".")]
        sizes = [os.path.getsize(f) / 2 ** 20 for f in outputs if os.path.isfile(f)]
        per_photo = (whole - one) / (FLAGS.photos - 1)
        print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs")
        print(f"| photos | size | format | one photo s | folder s | s per photo, amortised | peak RSS MiB | output MiB |")
        print(f"| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        print(f"| {FLAGS.photos} | {width}x{height} JPEG | {FLAGS.format} | {one:.1f} | {whole:.1f} | "
              f"**{per_photo:.2f}** | {peak_mib:.0f} | "
              f"{np.mean(sizes):.1f} |")
        print(line)


if __name__ == "__main__":
    app.run(main)
