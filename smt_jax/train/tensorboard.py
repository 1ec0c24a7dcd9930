"""TensorBoard event files of a run (`log.tensorboard = True`), written without TensorFlow.

`TensorBoardWriter(workdir, start)` writes into workdir, beside metrics.jsonl, through
tensorboardX (a small pure-Python package: numpy and protobuf): the same scalars as
metrics.jsonl under "SPLIT/NAME", and the run's PNGs (curves.png, the evaluation's plots) as
images. A resumed run hides the events after its checkpoint (`purge_step`), as metrics.jsonl
drops those rows, so a curve never doubles back.

    tensorboard --logdir workdirs   # any TensorBoard, or tbparse / tensorboardX to read them
"""

import pathlib

import numpy as np

from smt_jax.errors import ConfigError

IMAGES = ("curves.png", "read.png", "drift.png", "length.png", "samples.png")


def available() -> bool:
  """Whether the event-file writer (tensorboardX) is installed."""
  import importlib.util

  return importlib.util.find_spec("tensorboardX") is not None


class TensorBoardWriter:
  """Scalars and PNG images into event files in `workdir`; only process 0 should make one."""

  def __init__(self, workdir: str | pathlib.Path, start: int = 0):
    try:
      from tensorboardX import SummaryWriter
    except ImportError as e:
      raise ConfigError(
        "log.tensorboard=True needs the tensorboardX package (pip install tensorboardX), or set "
        "log.tensorboard=False."
      ) from e
    self.workdir = pathlib.Path(workdir)
    # Events at steps > start were written by an interrupted run and are re-logged now.
    self.writer = SummaryWriter(str(self.workdir), purge_step=start + 1 if start else None)

  def write(self, step: int, split: str, metrics: dict) -> None:
    for name, value in metrics.items():
      self.writer.add_scalar(f"{split}/{name}", float(value), int(step))
    self.writer.flush()

  def write_images(self, step: int, names=IMAGES) -> list[str]:
    """Adds the PNGs among `names` that exist in the workdir; returns the names added."""
    import matplotlib.image

    added = []
    for name in names:
      path = self.workdir / name
      if not path.is_file():
        continue
      image = matplotlib.image.imread(path)  # float in [0, 1], H x W x (3 | 4)
      if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
      image = (np.clip(image[..., :3], 0, 1) * 255).astype(np.uint8)
      self.writer.add_image(f"plots/{path.stem}", image, int(step), dataformats="HWC")
      added.append(name)
    self.writer.flush()
    return added

  def close(self) -> None:
    self.writer.close()
