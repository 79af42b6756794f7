"""Cells of the Hugging Face layout (``hf_layout.py``) as a split and as sparse rows.

Opening a snapshot reads each shard's footer and its ``plate``, ``cell_line_id`` and
``drug`` columns once (a few bytes a cell), checks the columns the model needs, and
keeps per (shard, plate) the rows a split takes. ``ParquetRows`` then serves any set
of rows as a SparseBatch by decoding the row groups that hold them (a few kept
decoded per process: streaming reads each group once), dropping the CLS entry and
mapping token ids to model columns.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from raycell.core.errors import BadData, RaycellError
from raycell.core.filesystems import fs_path, join
from raycell.tahoe.data.hf_layout import GENE_TABLE, SHARDS
from raycell.tahoe.data.labels import LabelSpace
from raycell.tahoe.data.plates import PLATE_PATTERN, TahoeSplit
from raycell.tahoe.data.sparse import SparseBatch

NEEDED = ("genes", "expressions", "plate", "cell_line_id", "drug")
PLATE_NAME = re.compile(r"(\d+)$")
DECODED_GROUPS = 8  # row groups kept decoded per process


@dataclass(frozen=True)
class ShardRows:
    """The rows one split takes from one shard (those of one plate), by position."""

    path: str  # a local path or an s3:// / gs:// URI
    plate: int
    rows: np.ndarray  # int32, sorted positions in the shard (a shard is ~30k rows)
    group_starts: np.ndarray  # int64: each row group's first row, then the shard's rows

    @property
    def n_rows(self) -> int:
        return int(self.rows.size)


@dataclass(frozen=True)
class ShardIndex:
    """What opening a shard learns: its plates, cell lines and drugs, its row groups."""

    path: str
    plate: np.ndarray  # int plate number per row
    cell_line: pa.DictionaryArray
    drug: pa.DictionaryArray
    group_starts: np.ndarray


def find_shards(root: str, fs) -> list[str]:
    """The expression shards of a snapshot (a folder or an object-storage prefix), as
    URIs in the release's order."""
    from pyarrow.fs import FileSelector, FileType

    where = fs_path(root)
    if fs.get_file_info(where).type != FileType.Directory:
        raise RaycellError(f"parquet directory {root} does not exist")
    names = [f.base_name for f in fs.get_file_info(FileSelector(where))]
    if any(PLATE_PATTERN.match(name) for name in names):
        raise RaycellError(f"{root} holds h5ad plates and a parquet snapshot: keep one "
                           "format a folder")
    found = fs.get_file_info(FileSelector(fs_path(join(root, SHARDS)), allow_not_found=True))
    shards = sorted(f.base_name for f in found
                    if f.type == FileType.File and f.base_name.endswith(".parquet"))
    if not shards:
        raise RaycellError(f"parquet directory {root} holds no shards ({SHARDS}/*.parquet)")
    # train-00000-of-..., zero-padded: name order is the release's order
    return [join(root, SHARDS, name) for name in shards]


def read_table(uri: str, fs, what: str, columns: list[str] | None = None) -> pa.Table:
    """A small parquet table of the snapshot (gene or drug metadata), errors as one line."""
    from pyarrow.fs import FileType

    if fs.get_file_info(fs_path(uri)).type != FileType.File:
        raise RaycellError(f"no {what} {uri}")
    try:
        return pq.read_table(fs_path(uri), filesystem=fs, columns=columns)
    except (pa.ArrowInvalid, KeyError, OSError) as exc:  # one line, not Arrow's text
        raise RaycellError(f"{what} {uri} cannot be read: {type(exc).__name__}") from None


def gene_columns(root: str, fs) -> np.ndarray:
    """token id -> model column (-1: not a gene), from gene_metadata's token ids in order."""
    uri = join(root, GENE_TABLE)
    tokens = read_table(uri, fs, "gene table", ["token_id"]).column("token_id").to_numpy()
    tokens = np.sort(tokens.astype(np.int64))
    if tokens.size == 0 or tokens[0] < 0 or np.any(np.diff(tokens) == 0):
        raise RaycellError(f"gene table {uri}: token_id must be distinct non-negative ids")
    # One entry past the last token, -1: a decode looks up every token in one pass, clipped
    # to this end (as unsigned, so negative ids land there too).
    lookup = np.full(int(tokens[-1]) + 2, -1, np.int32)
    lookup[tokens] = np.arange(tokens.size, dtype=np.int32)
    return lookup


def open_shard(path: str, fs) -> pq.ParquetFile:
    return pq.ParquetFile(fs.open_input_file(fs_path(path)))


def index_shard(path: str, fs) -> ShardIndex:
    try:
        file = open_shard(path, fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RaycellError(f"{path}: not a readable parquet file ({type(exc).__name__})") \
            from None
    missing = [c for c in NEEDED if c not in file.schema_arrow.names]
    if missing:
        raise RaycellError(f"{path} has no column '{missing[0]}'")
    table = file.read(columns=["plate", "cell_line_id", "drug"])
    for name in table.column_names:  # a cell without one cannot be placed or labelled
        column = table.column(name)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise RaycellError(f"{path} row {row}: no {name}")
    meta = file.metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    plates = table.column("plate").combine_chunks().dictionary_encode()
    numbers = []
    for name in plates.dictionary.to_pylist():
        match = PLATE_NAME.search(str(name))
        if match is None:
            raise RaycellError(f"{path}: plate {name!r} names no plate number")
        numbers.append(int(match.group(1)))
        if numbers[-1] > np.iinfo(np.int16).max:
            raise RaycellError(f"{path}: plate {name!r}: numbers above 32767 are not plates")
    # int16 (plate numbers are small): 100M cells' plates in 200 MB, not 800 (docs/benchmarks.md)
    plate = np.asarray(numbers, np.int16)[plates.indices.to_numpy()] if numbers else \
        np.zeros(0, np.int16)
    return ShardIndex(str(path), plate,
                      table.column("cell_line_id").combine_chunks().dictionary_encode(),
                      table.column("drug").combine_chunks().dictionary_encode(),
                      np.cumsum([0, *sizes]).astype(np.int64))


def cell_lines(index: list[ShardIndex], plates: list[int]) -> set[str]:
    """Every cell line of the plates' cells: the label space."""
    found: set[str] = set()
    for shard in index:
        taken = np.isin(shard.plate, plates)
        if taken.any():
            codes = np.unique(shard.cell_line.indices.to_numpy()[taken])
            found.update(str(v) for v in shard.cell_line.dictionary.take(codes).to_pylist())
    return found


def read_parquet_split(index: list[ShardIndex], plates: list[int], labels: LabelSpace,
                       max_cells: int | None, drug_table: str, columns: np.ndarray,
                       role: str, fs) -> TahoeSplit:
    """The cells of ``plates`` in the order asked, each plate's in shard order (the h5ad
    reader's order for converted plates), the first ``max_cells`` of them if set."""
    import pandas as pd

    pieces, left = [], max_cells
    found = {int(p) for shard in index for p in np.unique(shard.plate)}
    missing = [p for p in plates if p not in found]
    if missing:
        raise RaycellError(f"{role} plate {missing[0]} not found (found plates {sorted(found)})")
    for number in plates:  # which rows, first: then the codes fill one array, not a list
        for shard in index:
            rows = np.flatnonzero(shard.plate == number)
            if left is not None:
                rows = rows[:left]
                left -= rows.size
            if rows.size:
                pieces.append((shard, ShardRows(shard.path, number, rows.astype(np.int32),
                                                shard.group_starts)))
    if not pieces:
        raise RaycellError(f"no cells in {role} plates {plates}")
    codes = np.empty((sum(p.n_rows for _, p in pieces), 2), np.int32)
    at = 0
    for shard, piece in pieces:
        pick = pa.array(piece.rows)
        cell_line, drug = (pd.Categorical.from_codes(
            column.indices.take(pick).to_numpy(zero_copy_only=False),
            [str(v) for v in column.dictionary.to_pylist()])
            for column in (shard.cell_line, shard.drug))
        codes[at : at + piece.n_rows] = labels.encode(cell_line, drug, source=shard.path,
                                                      drug_table=drug_table)
        at += piece.n_rows
    n_vars = int(columns.max()) + 1
    return TahoeSplit(tuple(p for _, p in pieces), n_vars, codes, columns, fs)


class ParquetRows:
    """Row-addressable view of a parquet split: ``rows[ids]`` -> SparseBatch, like
    ``TahoeRows`` for plates. Picklable: files open lazily in whichever process reads."""

    def __init__(self, split: TahoeSplit, labels: LabelSpace):
        self.split, self.labels = split, labels
        self.offsets = np.cumsum([0] + [p.n_rows for p in split.plates])
        self.n_vars = split.n_vars
        self._files: dict[str, pq.ParquetFile] = {}
        self._groups: OrderedDict[tuple[str, int], sp.csr_array] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}, "_groups": OrderedDict()}

    def __getitem__(self, rows: np.ndarray) -> SparseBatch:
        rows = np.asarray(rows)
        unique, inverse = np.unique(rows, return_inverse=True)
        parts = self.parts(unique)
        x = sp.vstack(parts, format="csr") if len(parts) > 1 else sp.csr_array(parts[0])
        batch = SparseBatch(x, self.labels.expand(self.split.codes[unique]), unique)
        return batch if unique.size == rows.size else batch[inverse.ravel()]

    def parts(self, unique: np.ndarray) -> list[sp.csr_array]:
        """The sorted, distinct ``unique`` rows, as CSR pieces (one a row group) in order:
        stacked by ``__getitem__``; a Ray Data read task passes them on unstacked."""
        piece_of = np.searchsorted(self.offsets, unique, side="right") - 1
        parts = []
        for piece in np.unique(piece_of):
            shard = self.split.plates[piece]
            local = shard.rows[unique[piece_of == piece] - self.offsets[piece]]
            group_of = np.searchsorted(shard.group_starts, local, side="right") - 1
            groups = np.unique(group_of)
            decoded = self._groups_of(shard, [int(g) for g in groups])
            for group in groups:
                taken = local[group_of == group] - shard.group_starts[group]
                whole = taken.size == decoded[group].shape[0]
                parts.append(decoded[group] if whole else decoded[group][taken])
        return parts

    def _groups_of(self, shard: ShardRows, groups: list[int]) -> dict[int, sp.csr_array]:
        """Row groups of a shard, decoded: the kept ones as they are, the others read in one
        call (pyarrow reads them in parallel, faster than one at a time: 166 against 255 ms
        for 16 groups of Tahoe-shaped cells here)."""
        found = {}
        for group in groups:
            if (shard.path, group) in self._groups:
                self._groups.move_to_end((shard.path, group))
                found[group] = self._groups[(shard.path, group)]
        missing = [g for g in groups if g not in found]
        if not missing:
            return found
        if shard.path not in self._files:
            self._files[shard.path] = open_shard(shard.path, self.split.filesystem)
        table = self._files[shard.path].read_row_groups(missing, columns=["genes", "expressions"])
        at = 0
        for group in missing:
            start, stop = (int(v) for v in shard.group_starts[group : group + 2])
            found[group] = decode_cells(table.slice(at, stop - start), self.split.token_columns,
                                        self.n_vars, shard.path, np.arange(start, stop))
            at += stop - start
            self._groups[(shard.path, group)] = found[group]
            if len(self._groups) > DECODED_GROUPS:
                self._groups.popitem(last=False)
        return found


def decode_cells(table: pa.Table, columns: np.ndarray, n_vars: int, path: str,
                 positions: np.ndarray) -> sp.csr_array:
    """Rows of ``genes``/``expressions`` as CSR counts over model columns: the Arrow lists'
    offsets are the row pointers, a leading negative entry (CLS) is dropped, and every
    token, length and count is checked (naming the shard and the row's ``positions`` entry,
    its place in the shard)."""
    genes = table.column("genes").combine_chunks()
    values = table.column("expressions").combine_chunks()
    offsets = genes.offsets.to_numpy().astype(np.int64)
    other = values.offsets.to_numpy().astype(np.int64)
    offsets, other = offsets - offsets[0], other - other[0]
    if not np.array_equal(offsets, other):
        row = int(np.flatnonzero(np.diff(offsets) != np.diff(other))[0])
        raise BadData(f"{path} row {positions[row]}: genes and expressions differ in length")
    # Zero-copy views of the lists' values; each pass below reads them once (about 1.5M
    # entries a row group of Tahoe-shaped cells).
    tokens = genes.flatten().to_numpy(zero_copy_only=False)
    counts = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n = offsets.size - 1
    cols = token_columns(tokens, columns, n_vars)
    kept = None
    firsts = offsets[:-1][np.diff(offsets) > 0]
    cls = firsts[counts[firsts] < 0]
    if cls.size:  # drop them, and shorten their rows
        kept = np.ones(tokens.size, bool)
        kept[cls] = False
        dropped = np.zeros(n + 1, np.int64)
        dropped[np.searchsorted(offsets, cls, side="right")] = 1
        offsets = offsets - np.cumsum(dropped)
        cols, counts = cols[kept], counts[kept]

    def culprit(bad: np.ndarray) -> tuple[int, int]:
        """The first bad entry: its row's place in the shard, its index in ``tokens``."""
        at = int(np.flatnonzero(bad)[0])
        row = int(positions[int(np.searchsorted(offsets, at, side="right")) - 1])
        return row, (at if kept is None else int(np.flatnonzero(kept)[at]))

    if cols.size and (cols.min() < 0 or cols.max() >= n_vars):
        row, at = culprit((cols < 0) | (cols >= n_vars))
        raise BadData(f"{path} row {row}: token id {tokens[at]} is not in gene_metadata")
    if counts.size and not (counts.min() >= 0 and np.isfinite(counts.max())):
        row, at = culprit(~((counts >= 0) & np.isfinite(counts)))
        raise BadData(f"{path} row {row}: expression {values.flatten()[at]} (counts must be "
                      "finite and non-negative)")
    # int32 row pointers with int32 columns: scipy then keeps both as they are (int64
    # pointers would make it copy the columns to int64).
    if offsets[-1] < np.iinfo(np.int32).max:
        offsets = offsets.astype(np.int32)
    return sp.csr_array((counts, cols, offsets), shape=(n, n_vars))


def token_columns(tokens: np.ndarray, columns: np.ndarray, n_vars: int) -> np.ndarray:
    """Each token's model column: outside [0, n_vars) where it names no gene.

    When the gene table's ids are consecutive (as the release's are, and the converter
    writes them), a column is the id less the first one: a subtraction, 3x faster here
    than looking every token up (the table then has ``n_vars`` entries before its -1 end).
    Otherwise unknown, reserved (CLS included) and negative ids all look up -1.
    """
    first = columns.size - 1 - n_vars
    if tokens.itemsize <= 4 and first >= 0 and columns[first] == 0:  # wraps land outside
        return (tokens - tokens.dtype.type(first)).astype(np.int32, copy=False)
    return np.take(columns, tokens.view(f"u{tokens.itemsize}"), mode="clip")


def shard_index(root: str, fs) -> list[ShardIndex]:
    return [index_shard(path, fs) for path in find_shards(root, fs)]
