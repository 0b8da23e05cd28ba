"""Base class for xmodal's TFDS builders: ArrayRecord output, no TensorFlow needed."""
from __future__ import annotations

import logging
import sys

import tensorflow_datasets as tfds
from etils import epath


class _ExpectedWhileBuilding(logging.Filter):
    """Drops TFDS's "Variant folder ... has no dataset_info.json" warning: TFDS makes the
    version folder before writing into it and then warns about its own empty folder, twice per
    build. A copy that is really damaged is caught by ``xmodal.core.datasets`` (one line,
    ``DataDamaged``), not by this warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Variant folder %s has no")


logging.getLogger("absl").addFilter(_ExpectedWhileBuilding())


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Subclass this (not GeneratorBasedBuilder) for every dataset in ``xmodal/data``.

    - Writes ArrayRecord: the random access grain's samplers need (TFRecord has none).
    - Images must be given to ``tfds.features.Image`` as PNG bytes (encoding arrays needs TF);
      they decode with PIL through ``tfds.data_source``.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 finds a packaged builder's file through the `importlib_resources`
        # backport, which it declares only for Python < 3.9 (so it is absent here); the
        # module's own file is what that lookup would return.
        import sys
        return epath.Path(sys.modules[cls.__module__].__file__)

    def __init__(self, *, file_format: str = "array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    @property
    def info(self) -> tfds.core.DatasetInfo:
        # A builder whose set is not prepared yet asks TFDS's public bucket for precomputed
        # metadata: ``DatasetInfo.initialize_from_bucket`` makes a ``/tmp/tmp*tfds`` folder
        # first and never removes it (one per builder; the test suite left ~1,000), and none
        # of xmodal's sets is on that bucket. The info object is cached, so this holds for
        # the call in ``__init__`` and every later one.
        info = super().info
        info.initialize_from_bucket = lambda: None
        return info

    # TFDS announces "Downloading and preparing dataset Unknown size ..." and "downloaded and
    # prepared ... Subsequent calls will reuse this data": nothing is downloaded here, and
    # ``xmodal.core.datasets`` says when a set is ready, with its split sizes. One true line.
    def _log_download_bytes(self) -> None:
        # Progress bars redraw with carriage returns: in a log file or a pipe they are a
        # screenful of fragments, so they are kept to terminals.
        if not sys.stderr.isatty():
            tfds.disable_progress_bar()
        # A set without configs (eight_gaussians) has no builder_config.
        config = f"/{self.builder_config.name}" if self.builder_config else ""
        print(f"{self.name}{config}: building from what is installed on this machine "
              f"(nothing is downloaded) into {self.data_dir} ...", flush=True)

    def _log_download_done(self) -> None:
        pass
