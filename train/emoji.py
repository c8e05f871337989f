"""A colour data set that nobody here made: every emoji of Debian's Noto Color Emoji font, drawn with Pillow.

`python -m vae_edge.train.emoji --out data/emoji` (make data-emoji) writes one SIZE x SIZE RGB PNG per emoji, named by
its code point (1f600.png), the font's license notice beside them, and SOURCE.txt (which font, which rule); then
`vae-train --dataset data/emoji --image-size 64 --channels 3 --arch conv` trains on them.

The emoji: each code point of the font's character map (fontTools) whose glyph draws at least one pixel that is not
fully transparent. Sequences (skin tones, flags, ZWJ families) are left out: they need text shaping (raqm), and the
set would then depend on how Pillow was built.
The alpha rule: each glyph is drawn onto white, out = round(rgb * a + 255 * (1 - a)) per channel with a = alpha / 255
(Pillow's paste through the glyph's alpha), then cropped to its opaque part, centred on a white square and resized with
LANCZOS. The same font gives the same bytes on every run.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from vae_edge.runtime.errors import fail, os_error
from vae_edge.runtime.images import make_grid
from vae_edge.runtime.outputs import atomic_file, new_folder, recover_folder, swap_in, write_new
from vae_edge.runtime.png import write_png

from .progress import Bar

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # Debian's fonts-noto-color-emoji
NOTICE = Path("/usr/share/doc/fonts-noto-color-emoji/copyright")  # its copyright file: the font is OFL-1.1
LICENSE_NAME = "LICENSE-noto-color-emoji.txt"
STRIKE = 109  # the font's one bitmap size (CBDT): FreeType refuses to load it at any other
WHITE = (255, 255, 255)
GRID = 8  # --grid: rows and columns of the picture
INSTALL = "apt-get install fonts-noto-color-emoji"
TAG = "emoji"  # beside --out: .OUT.emoji.new and the like (runtime/outputs.py: the folder swap)


class EmojiError(ValueError):
    """The set cannot be made; the message is one line for the user."""


def code_points(font_path: Path) -> list[int]:
    """The code points of the font's character map, in order."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        raise EmojiError("the emoji set needs fontTools: pip install 'vae-edge[train]'") from None
    with TTFont(font_path, lazy=True) as font:
        return sorted(font.getBestCmap() or {})


def open_font(font_path: Path):
    """Pillow's font at the one size the bitmaps have; basic layout, so no text shaping changes a glyph."""
    from PIL import ImageFont

    if not font_path.is_file():
        raise EmojiError(f"the Noto Color Emoji font is not installed ({font_path}): {INSTALL}")
    try:
        return ImageFont.truetype(str(font_path), STRIKE, layout_engine=ImageFont.Layout.BASIC)
    except OSError as e:
        raise EmojiError(f"{font_path} is not a colour bitmap font Pillow can load at size {STRIKE}: {e}") from None


def render(font, code_point: int, size: int) -> np.ndarray | None:
    """One emoji as uint8 (size, size, 3) on white, or None where its glyph draws nothing."""
    from PIL import Image, ImageDraw

    text = chr(code_point)
    left, top, right, bottom = font.getbbox(text)
    if right <= left or bottom <= top:
        return None
    box = (right - left, bottom - top)
    alpha = Image.new("RGBA", box, (0, 0, 0, 0))  # drawn once on nothing for the alpha, once on white for the colours
    ImageDraw.Draw(alpha).text((-left, -top), text, font=font, embedded_color=True)
    opaque = alpha.getchannel("A").getbbox()
    if opaque is None:
        return None
    on_white = Image.new("RGB", box, WHITE)
    ImageDraw.Draw(on_white).text((-left, -top), text, font=font, embedded_color=True)
    glyph = on_white.crop(opaque)
    side = max(glyph.size)
    square = Image.new("RGB", (side, side), WHITE)
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS))


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    write_png(buffer, image)
    return buffer.getvalue()


def file_name(code_point: int) -> str:
    return f"{code_point:04x}.png"


def source_text(font_path: Path, size: int, count: int) -> str:
    digest = hashlib.sha256(font_path.read_bytes()).hexdigest()
    return (f"{count} emoji, {size}x{size} RGB: one PNG per code point of the font's character map that draws\n"
            f"a pixel, rendered by vae_edge.train.emoji (Pillow, size {STRIKE}) from {font_path.name}\n"
            f"(sha256 {digest}), Debian's fonts-noto-color-emoji.\n"
            f"Composited on white: out = round(rgb * a + 255 * (1 - a)), cropped to the opaque part, centred on a\n"
            f"white square, resized with LANCZOS.\n"
            f"The font: Copyright 2013-2017 Google Inc., SIL Open Font License 1.1 ({LICENSE_NAME}).\n")


def check_out(out: Path, force: bool) -> None:
    """Refuse, in one line, an output that is not a folder, a folder that holds files unless `force`, or a missing
    parent folder."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise EmojiError(f"--out {out} exists and is not a folder; refusing to replace it")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise EmojiError(f"--out {out} exists and is not empty; --force replaces it")
    if not out.parent.is_dir():
        raise EmojiError(f"--out {out}: there is no folder {out.parent}; make it first")


def make(out: Path, size: int = 64, font_path: Path = FONT, notice: Path = NOTICE, force: bool = False,
         show: bool = False) -> int:
    """Write the set into `out` as a whole (a temporary folder beside it, renamed into place); the count."""
    if not 8 <= size <= 128:
        raise EmojiError(f"--size must be between 8 and 128 pixels, got {size}")
    check_out(out, force)
    font = open_font(font_path)
    if not notice.is_file():
        raise EmojiError(f"the font's license notice {notice} is missing, and the images must keep it: "
                         f"{INSTALL} (with /usr/share/doc kept), or --notice PATH")
    points = code_points(font_path)
    recover_folder(out, TAG, "SOURCE.txt")  # what a killed run left beside out
    temporary = new_folder(out, TAG)
    try:
        count = 0
        with Bar(len(points), "rendering the emoji", show, unit="code points") as bar:
            for code_point in points:
                image = render(font, code_point, size)
                if image is not None:
                    write_new(temporary / file_name(code_point), png_bytes(image))
                    count += 1
                bar.advance()
        write_new(temporary / LICENSE_NAME, notice.read_bytes())
        write_new(temporary / "SOURCE.txt", source_text(font_path, size, count).encode())
        swap_in(temporary, out, TAG, check=lambda: check_out(out, force))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return count


def write_grid(folder: Path, path: Path) -> None:
    """A GRID x GRID picture of the set, evenly spaced in name order, in 256 colours (small enough for docs/)."""
    from PIL import Image

    names = sorted(folder.glob("*.png"))
    if not names:
        raise EmojiError(f"{folder} holds no PNG images to make a picture of")
    picked = names[::max(1, len(names) // GRID ** 2)][:GRID ** 2]
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in picked]).transpose(0, 3, 1, 2)
    grid = Image.fromarray(make_grid(images / np.float32(255), nrow=GRID, pad_value=1.0))
    with atomic_file(path) as f:
        grid.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(f, "PNG", optimize=True)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Render every emoji of Debian's Noto Color Emoji font (fonts-noto-color-emoji, SIL Open Font "
                       "License 1.1) as SIZE x SIZE RGB PNGs on white, with the font's license notice beside them: a "
                       "folder for vae-train --dataset.")


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="The folder to write (replaced as a whole with --force).")] = Path(
        "data/emoji"),
    size: Annotated[int, typer.Option(help="Width and height of each image, in pixels (8 to 128).")] = 64,
    font: Annotated[Path, typer.Option(help="The font file.")] = FONT,
    notice: Annotated[Path, typer.Option(help="The font's license notice, copied beside the images.")] = NOTICE,
    force: Annotated[bool, typer.Option(help="Replace a folder that holds files.")] = False,
    grid: Annotated[Path | None, typer.Option(
        help=f"Also write a {GRID}x{GRID} picture of the set here, in 256 colours (docs/emoji-data.png).")] = None,
) -> None:
    start = time.perf_counter()
    try:
        count = make(out, size, font, notice, force, show=True)
        if grid is not None:
            write_grid(out, grid)
    except EmojiError as e:
        fail(str(e))
    except OSError as e:
        fail(os_error(e))
    typer.echo(f"{out}: {count} emoji, {size}x{size} RGB PNGs, and {LICENSE_NAME} "
               f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    app(prog_name="python -m vae_edge.train.emoji")
