"""The workload of a campaign: one GEMM with seeded operands, as the hardware tiles it."""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sw.twin.gemm import iter_tiles, random_operands, tile_product
from sw.twin.protection import check_tile

__all__ = ["Workload", "TileData"]


@dataclass(frozen=True)
class TileData:
    """What a testbench needs to run one tile and check it: buffer words and expectation.

    A campaign ships it to its workers with each batch (:class:`sim.campaign.messages.BatchTask`).

    ``key`` names the workload and the tile: a simulator reloads its buffers when it changes.
    """
    key: str
    index: int
    k: int
    valid_rows: int
    valid_cols: int
    a_words: bytes
    b_words: bytes
    """The A and B buffer words, each zero-extended to ``max(rows, cols)`` bytes (one
    word size for both buffers), lane 0 in the low byte, word 0 first."""
    expected: tuple
    """Rows of the int32 tile the host reads on a clean run (zero-padded like the hardware's
    tile, range-checked when the design checks ranges)."""
    range: tuple | None
    """(lower, upper, zero mode) of the range checker, or ``None``."""

    @classmethod
    def of(cls, key, index, a_tile, b_tile, valid_rows, valid_cols, expected, bounds=None):
        """The tile of padded int8 operands ``a_tile`` (rows x k) and ``b_tile`` (k x cols),
        tensors or NumPy arrays, whose clean read is ``expected`` (int32 rows x cols)."""
        k = a_tile.shape[1]
        word_bytes = max(a_tile.shape[0], b_tile.shape[1])
        return cls(key=key, index=index, k=k, valid_rows=valid_rows, valid_cols=valid_cols,
                   a_words=_words(np.asarray(a_tile).T, word_bytes),
                   b_words=_words(np.asarray(b_tile), word_bytes),
                   expected=tuple(tuple(row) for row in expected.tolist()),
                   range=None if bounds is None else (bounds.lower, bounds.upper, bounds.zero))


def _words(lanes, word_bytes):
    """Buffer words of int8 ``lanes`` (steps x lanes), each ``word_bytes`` long: lane 0 in
    the low byte, as :func:`hw.register_map.pack_lanes` packs them."""
    rows = np.ascontiguousarray(lanes).view(np.uint8)
    words = np.zeros((rows.shape[0], word_bytes), dtype=np.uint8)
    words[:, :rows.shape[1]] = rows
    return words.tobytes()


@dataclass(frozen=True)
class Workload:
    """C = A x B for A (m x k) and B (k x n), operands drawn by ``random_operands(seed)``."""
    m: int
    k: int
    n: int
    seed: int = 0
    extreme_fraction: float = 0.1

    def operands(self):
        return random_operands(self.m, self.k, self.n, self.seed, self.extreme_fraction)

    def tile_count(self, rows, cols):
        return -(-self.m // rows) * -(-self.n // cols)

    @lru_cache(maxsize=8)
    def tiles(self, rows, cols, bounds=None):
        """Every tile, with its words and, from the twin, what a host reads on a clean run
        (``bounds``: the range checker's ``RangeBounds``, if the design has one)."""
        a, b = self.operands()
        tiles = []
        for tile in iter_tiles(a, b, rows, cols):
            clean = tile_product(tile.a, tile.b)
            expected = clean if bounds is None else check_tile(tile.a, tile.b, clean,
                                                               bounds=bounds).output
            tiles.append(TileData.of(f"{self!r}/{rows}x{cols}/{bounds!r}/tile {tile.index}",
                                     tile.index, tile.a, tile.b, tile.valid_rows,
                                     tile.valid_cols, expected, bounds))
        return tuple(tiles)
