"""Contact sheets: a PNG grid of a dataset's examples with their captions, to look at the data.

Each cell is a ``THUMB`` x ``THUMB`` picture above up to ``CAPTION_LINES`` lines of caption:

    cell  = (THUMB + 2 * PAD) wide, (THUMB + 2 * PAD + CAPTION_LINES * LINE_HEIGHT) high
    grid  = cols = ceil(sqrt(n)) cells across, rows = ceil(n / cols) down

The picture is the example's image (nearest-neighbour when enlarged, so the stored resolution
stays visible) or, for audio, a log-magnitude spectrogram. Which fields are drawn is found from
the dataset's features: the first ``Image``, the first 1-D float ``Tensor`` whose name contains
"audio" or "wav", and the first ``Text``; a source module overrides this with
``CARD["show"] = {"image": field, "caption": field}`` (or ``"audio"``).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw, ImageFont

from xmodal.data import cards
from xmodal.core import datasets as sources

THUMB = 128
PAD = 4
CAPTION_LINES = 3
FONT_SIZE = 12
LINE_HEIGHT = 15
CELL_WIDTH = THUMB + 2 * PAD
CELL_HEIGHT = THUMB + 2 * PAD + CAPTION_LINES * LINE_HEIGHT
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
AUDIO_NAME = re.compile(r"audio|wav", re.IGNORECASE)

# Tried in order for each character; a character goes to the first font that has a glyph for
# it, so Latin/Cyrillic come from a text font and CJK from a CJK font when both are installed.
FONT_FILES: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "fonts-noto-cjk"),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core"),
    ("/usr/share/fonts/truetype/freefont/FreeSans.ttf", "fonts-freefont-ttf"),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", "fonts-droid-fallback"),
)
# A code point no font maps (plane 16 private use): its rendering is the font's "missing" box.
_UNMAPPED = "\U0010FFFD"


@dataclasses.dataclass(frozen=True)
class ShowFields:
    image: str | None
    audio: str | None
    caption: str | None
    video: str | None = None      # T x H x W x 3 frames: drawn by ``show_video``
    masks: str | None = None      # the video's instance ids, tinted over its frames


@dataclasses.dataclass(frozen=True)
class FontChain:
    """Fonts tried in order per character; the last is Pillow's built-in font (Latin only).

    ``missing[i]`` is font i's rendering of an unmapped code point: a character whose
    rendering equals it has no glyph in that font.
    """

    fonts: tuple[Any, ...]
    names: tuple[str, ...]
    missing: tuple[tuple[tuple[int, int], bytes], ...]
    # Which font draws each character seen so far: glyph checks render masks, and wrapping
    # measures the same characters many times.
    _choice: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def font_for(self, char: str) -> Any:
        if char not in self._choice:
            self._choice[char] = 0 if char.isspace() else next(
                (i for i, font in enumerate(self.fonts[:-1])
                 if _glyph_signature(font, char) != self.missing[i]), len(self.fonts) - 1)
        return self.fonts[self._choice[char]]

    def runs(self, text: str) -> list[tuple[str, Any]]:
        """``text`` cut into (substring, font) pieces that one font draws."""
        runs: list[tuple[str, Any]] = []
        for char in text:
            font = self.font_for(char)
            if runs and runs[-1][1] is font:
                runs[-1] = (runs[-1][0] + char, font)
            else:
                runs.append((char, font))
        return runs

    def length(self, text: str) -> float:
        return sum(font.getlength(run) for run, font in self.runs(text))

    def describe(self) -> str:
        return ", then ".join(self.names)


def _glyph_signature(font: Any, char: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(char)
    return mask.size, bytes(mask)


def load_fonts(size: int = FONT_SIZE) -> FontChain:
    """Installed fonts of ``FONT_FILES`` (checked under ``sources.debroot()``) + Pillow's own."""
    fonts, names = [], []
    for path, package in FONT_FILES:
        try:
            font = ImageFont.truetype(sources.resolve_file(path), size)
        except OSError:
            continue  # not installed: the next font or Pillow's default covers the text
        fonts.append(font)
        names.append(f"{' '.join(font.getname())} ({package})")
    default = ImageFont.load_default(size=size)
    fonts.append(default)
    names.append("Pillow default (" + " ".join(default.getname()) + ")"
                 if hasattr(default, "getname") else "Pillow default")
    missing = tuple(_glyph_signature(font, _UNMAPPED) for font in fonts)
    return FontChain(tuple(fonts), tuple(names), missing)


def wrap(text: str, fonts: FontChain, width: float, max_lines: int) -> list[str]:
    """Greedy wrap to ``width`` pixels, breaking at the last space or, failing one (CJK, long
    words), between characters; text beyond ``max_lines`` is cut and marked with '…'."""
    lines: list[str] = []
    line = ""
    for char in text.replace("\n", " "):
        if fonts.length(line + char) <= width or not line:
            line += char
            continue
        cut = line.rfind(" ")
        if cut > 0 and char != " ":
            lines.append(line[:cut])
            line = line[cut + 1:] + char
        else:
            lines.append(line)
            line = "" if char == " " else char
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and fonts.length(last + "…") > width:
            last = last[:-1]
        lines = lines[:max_lines - 1] + [last + "…"]
    return lines


def spectrogram(wave: np.ndarray, n_fft: int = 256, hop: int = 64,
                dynamic_range_db: float = 80.0) -> np.ndarray:
    """uint8 [n_fft // 2 + 1, frames] image of 20 log10 |STFT|, low frequencies at the bottom.

    Hann-windowed frames every ``hop`` samples; the brightest bin is 255 and everything
    ``dynamic_range_db`` below it is 0. A silent clip is all 0.
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    frames = 1 + (wave.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    magnitude = np.abs(np.fft.rfft(wave[index] * np.hanning(n_fft), axis=-1)).T
    if magnitude.max() == 0:
        return np.zeros(magnitude.shape, np.uint8)
    db = 20 * np.log10(np.maximum(magnitude, magnitude.max() * 1e-10))
    scaled = (db - (db.max() - dynamic_range_db)) / dynamic_range_db
    return (255 * np.clip(scaled, 0, 1)).astype(np.uint8)[::-1]


def find_fields(features: Mapping[str, Any], override: Mapping[str, str] | None = None,
                dataset: str = "") -> ShowFields:
    """Fields to draw: ``override`` (from ``CARD["show"]``) first, else found by feature type."""
    override = dict(override or {})
    unknown = sorted(set(override) - {"image", "audio", "caption", "video", "masks"})
    if unknown:
        raise ValueError(f"CARD['show'] of {dataset!r} has keys {unknown}; "
                         "allowed: image, audio, caption, video, masks")
    for role, field in override.items():
        if field not in features:
            raise ValueError(f"the {role} field {field!r} (from --caption or CARD['show']) is "
                             f"not a feature of {dataset!r}; features: {', '.join(features)}")

    def first(test) -> str | None:
        return next((k for k, f in features.items() if test(k, f)), None)

    image = first(lambda k, f: isinstance(f, tfds.features.Image))
    audio = first(lambda k, f: isinstance(f, tfds.features.Tensor) and len(f.shape) == 1
                  and np.dtype(f.np_dtype).kind == "f" and AUDIO_NAME.search(k))
    caption = first(lambda k, f: isinstance(f, tfds.features.Text))
    if "video" in override:
        return ShowFields(None, None, override.get("caption", caption), override["video"],
                          override.get("masks"))
    if "image" in override or "audio" in override:
        image, audio = override.get("image"), override.get("audio")
    fields = ShowFields(image=image, audio=audio, caption=override.get("caption", caption))
    if fields.image is None and fields.audio is None:
        raise ValueError(
            f"dataset {dataset!r} has no Image feature and no 1-D float Tensor named like "
            f"audio/wave among {', '.join(features)}; name the field to draw in its module's "
            "CARD['show'] = {'image': FIELD} or {'audio': FIELD}")
    return fields


def picture(record: Mapping[str, Any], fields: ShowFields) -> Image.Image:
    """The example's image or spectrogram as a THUMB x THUMB RGB picture."""
    if fields.image is not None:
        array = np.asarray(record[fields.image])
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        image = Image.fromarray(array.astype(np.uint8)).convert("RGB")
    else:
        image = Image.fromarray(spectrogram(record[fields.audio])).convert("RGB")
    # Enlarge without smoothing so a 28 px image looks like 28 px; shrink with Lanczos.
    larger = image.width < THUMB or image.height < THUMB
    return image.resize((THUMB, THUMB), Image.Resampling.NEAREST if larger
                        else Image.Resampling.LANCZOS)


def caption_of(record: Mapping[str, Any], fields: ShowFields) -> str:
    if fields.caption is None:
        return ""
    value = record[fields.caption]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) for ``n`` cells: cols = ceil(sqrt(n)), rows = ceil(n / cols)."""
    if n < 1:
        raise ValueError(f"a contact sheet needs at least one example, got n={n}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def contact_sheet(records: Sequence[Mapping[str, Any]], fields: ShowFields,
                  fonts: FontChain) -> Image.Image:
    """The grid of ``records`` (see the module docstring for its layout)."""
    rows, cols = grid_shape(len(records))
    sheet = Image.new("RGB", (cols * CELL_WIDTH, rows * CELL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, record in enumerate(records):
        x0, y0 = (i % cols) * CELL_WIDTH, (i // cols) * CELL_HEIGHT
        sheet.paste(picture(record, fields), (x0 + PAD, y0 + PAD))
        lines = wrap(caption_of(record, fields), fonts, THUMB, CAPTION_LINES)
        for j, line in enumerate(lines):
            x, y = x0 + PAD, y0 + THUMB + 2 * PAD + j * LINE_HEIGHT
            for run, font in fonts.runs(line):
                draw.text((x, y), run, font=font, fill=TEXT_COLOUR)
                x += font.getlength(run)
    return sheet


def spread_indices(size: int, n: int) -> list[int]:
    """``min(n, size)`` indices spread evenly over ``range(size)`` (always the same ones)."""
    if size == 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, size - 1, min(n, size))})


@dataclasses.dataclass(frozen=True)
class Sheet:
    path: str
    rows: int
    cols: int
    count: int
    fields: ShowFields
    fonts: str


@dataclasses.dataclass(frozen=True)
class SheetInput:
    records: list
    fields: ShowFields
    ms_per_frame: int      # a video set's GIF speed (CARD["show"]["ms_per_frame"])


def sheet_input(name: str, split: str, n: int, data_dir: str | None = None,
                caption: str | None = None) -> SheetInput:
    """Prepares ``name`` if needed and reads ``n`` examples of ``split`` spread over it, with
    the fields to draw. ``caption`` names the Text field under the pictures instead of the one
    ``find_fields`` picks (e.g. ``name_zh`` to check another language)."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    builder = sources.prepare(name, data_dir)
    source = sources.data_source(name, split, data_dir)
    override = dict(cards.card_dict(name).get("show") or {})
    ms_per_frame = int(override.pop("ms_per_frame", 100))
    if caption is not None:
        override["caption"] = caption
    fields = find_fields(builder.info.features, override, name)
    records = [source[i] for i in spread_indices(len(source), n)]
    if not records:
        raise ValueError(f"split {split!r} of dataset {name!r} is empty")
    return SheetInput(records, fields, ms_per_frame)


def is_video(name: str) -> bool:
    """Whether the set draws as video (``CARD["show"]["video"]``: ``show_video``'s sheet)."""
    return "video" in (cards.card_dict(name).get("show") or {})


def write_contact_sheet(name: str, split: str, n: int, out: str, data_dir: str | None = None,
                        caption: str | None = None) -> Sheet:
    """Writes a sheet of ``n`` examples of ``split`` to ``out`` (a video set: use
    ``show_video.write_video_sheet``)."""
    given = sheet_input(name, split, n, data_dir, caption)
    if given.fields.video:
        raise ValueError(f"dataset {name!r} is a video set: draw it with "
                         "xmodal.data.show_video.write_video_sheet")
    fonts = load_fonts()
    contact_sheet(given.records, given.fields, fonts).save(out, format="PNG")
    rows, cols = grid_shape(len(given.records))
    return Sheet(out, rows, cols, len(given.records), given.fields, fonts.describe())
