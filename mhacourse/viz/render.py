"""Fast redraws of a heatmap figure for the explorer.

Drawing a figure with matplotlib takes ~100 ms on a small CPU, mostly for the
text (tick labels, titles, colour bar). When only the weights change, the
text does not, so :class:`HeatmapFrame` draws the figure once, keeps the
pixels, and on each update paints the new colours into the images' boxes and
encodes a PNG: a few milliseconds.
"""

import struct
import zlib

import matplotlib
import numpy as np

from .static import CMAP

__all__ = ["HeatmapFrame", "encode_png"]

HIGHLIGHT = np.array([255, 64, 64], dtype=np.uint8)


class HeatmapFrame:
    """A drawn figure whose heatmaps can be repainted without matplotlib.

    Args:
        fig (matplotlib.figure.Figure): A figure with an Agg canvas.
        images (list[matplotlib.image.AxesImage]): Its heatmaps, in the order
            :meth:`render` receives their data. They must use
            :func:`weight_norm` and the ``CMAP`` colour map.
    """

    def __init__(self, fig, images):
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())  # (height, width, 4)
        self.background = np.ascontiguousarray(pixels[..., :3])  # (height, width, 3)
        height = self.background.shape[0]
        self.boxes = []
        for image in images:
            box = image.get_window_extent()  # display pixels, origin at the bottom left
            x0, x1 = int(round(box.x0)), int(round(box.x1))
            y0, y1 = height - int(round(box.y1)), height - int(round(box.y0))  # origin at the top
            self.boxes.append((y0, y1, x0, x1))
        self.cmap = matplotlib.colormaps[CMAP]
        self._lut = (self.cmap(np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
        self.size = (self.background.shape[1], self.background.shape[0])

    def colours(self, weights):
        """``(Lq, Lk)`` weights -> ``(Lq, Lk, 3)`` uint8 colours of the shared scale."""
        scaled = np.sqrt(np.clip(np.nan_to_num(weights, nan=0.0), 0.0, 1.0))  # PowerNorm(0.5)
        return self._lut[np.minimum((scaled * 255 + 0.5).astype(np.intp), 255)]

    def render(self, arrays, highlight_row=None):
        """Paint each ``(Lq, Lk)`` array into its box and return PNG bytes.

        Args:
            arrays (list[array]): One ``(Lq, Lk)`` NumPy array per image.
            highlight_row (int, optional): Outline this query row in every
                heatmap.

        Returns:
            bytes: The PNG.
        """
        frame = self.background.copy()
        for (y0, y1, x0, x1), weights in zip(self.boxes, arrays):
            n_q, n_k = weights.shape
            rows = np.arange(y1 - y0) * n_q // (y1 - y0)  # pixel row -> query index
            cols = np.arange(x1 - x0) * n_k // (x1 - x0)  # pixel column -> key index
            frame[y0:y1, x0:x1] = self.colours(weights)[rows].take(cols, axis=1)
            if highlight_row is not None:
                self._outline(frame, rows, y0, x0, x1, highlight_row)
        return encode_png(frame)

    @staticmethod
    def _outline(frame, rows, y0, x0, x1, row):
        inside = np.nonzero(rows == row)[0]
        if inside.size == 0:
            return
        top, bottom = y0 + inside[0], y0 + inside[-1]
        for y in (top, top + 1, bottom - 1, bottom):
            frame[y, x0:x1] = HIGHLIGHT
        frame[top:bottom + 1, x0:x0 + 2] = HIGHLIGHT
        frame[top:bottom + 1, x1 - 2:x1] = HIGHLIGHT


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb, level=2):
    """Encode ``(height, width, 3)`` uint8 pixels as a PNG, fast.

    No per-row filters and light compression: heatmaps are runs of equal
    pixels, which zlib packs well anyway, and this is 3-5x faster than
    Pillow's encoder on a frame of the explorer.
    """
    height, width, _ = rgb.shape
    rows = np.empty((height, 1 + 3 * width), dtype=np.uint8)  # (H, 1 + 3W): filter byte, pixels
    rows[:, 0] = 0
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))
