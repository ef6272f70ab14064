"""Pictures of a run: loss curves and a grid of query -> top-5 retrieved images."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

GREEN = (40, 170, 60)
RED = (210, 40, 40)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Saves every per-epoch series of ``history`` as a line plot (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    for name, values in sorted(history.items()):
        if values:
            axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    axis.set_xlabel("epoch (stage 1 then stage 2)")
    axis.set_ylabel("loss")
    axis.set_title("training loss")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def retrieval_grid(
    query_images: Sequence[np.ndarray],
    query_labels: Sequence[str],
    neighbour_images: Sequence[Sequence[np.ndarray]],
    neighbour_labels: Sequence[Sequence[str]],
    neighbour_similarities: Sequence[Sequence[float]],
    tile: int = 112,
) -> np.ndarray:
    """Rows of ``query | top-k``; matches framed green when the label agrees, red otherwise.

    Returns:
      An RGB uint8 image.
    """
    rows = []
    for query, label, images, labels, sims in zip(
        query_images, query_labels, neighbour_images, neighbour_labels, neighbour_similarities
    ):
        tiles = [_tile(query, f"query: {label}", (90, 90, 90), tile)]
        tiles.append(np.full((tile + 22, 8, 3), 255, np.uint8))
        for image, match_label, similarity in zip(images, labels, sims):
            colour = GREEN if match_label == label else RED
            tiles.append(_tile(image, f"{match_label} {similarity:.2f}", colour, tile))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(rows, axis=0)


def save_rgb_png(image: np.ndarray, path: Path) -> None:
    """Writes an RGB image as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def _tile(image: np.ndarray, caption: str, colour: tuple[int, int, int], size: int) -> np.ndarray:
    border = 4
    inner = cv2.resize(image, (size - 2 * border, size - 2 * border), interpolation=cv2.INTER_AREA)
    framed = np.empty((size, size, 3), np.uint8)
    framed[:] = colour
    framed[border:-border, border:-border] = inner
    label = np.full((22, size, 3), 255, np.uint8)
    cv2.putText(label, caption[:18], (2, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return np.concatenate([framed, label], axis=0)
