"""xmodal: cross-modal matching, flow matching and score distillation in JAX."""
import logging as _logging


class _DropLibraryHints(_logging.Filter):
    """TFDS advises installing OpenCV for faster image decoding, once per process (so once per
    grain worker). PIL decodes the small images here as well, and the advice is not the user's
    to act on; every other library message passes."""

    HINTS = ("OpenCV is not installed",)

    def filter(self, record: _logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(h in message for h in self.HINTS)


# absl.logging writes through the "absl" logger; every process that unpickles an xmodal
# transform (grain's workers too) imports this package first.
_logging.getLogger("absl").addFilter(_DropLibraryHints())
