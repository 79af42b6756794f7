"""Label spaces of the four Tahoe tasks, fixed from the drug table and obs categories.

Fixing the spaces from metadata (not from whichever cells were loaded) keeps class
indices, head sizes and macro F1 comparable across pilots, strategies and plates.
Cells store only (cell_line, drug) codes; MoA labels are looked up from the drug.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from raycell.core.errors import RaycellError

TASKS = ("cell_line", "drug", "moa_broad", "moa_fine")
CONTROL_LABEL = "control"


@dataclass(frozen=True)
class LabelSpace:
    cell_line: tuple[str, ...]
    drug: tuple[str, ...]
    moa_broad: tuple[str, ...]
    moa_fine: tuple[str, ...]
    drug_to_moa_broad: np.ndarray = field(repr=False)  # int32 index per drug
    drug_to_moa_fine: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, drug_table: pd.DataFrame, cell_lines: set[str], control: str) -> LabelSpace:
        """Drugs and MoAs from the (stripped) drug table; the control maps to 'control'."""
        table = drug_table[drug_table["drug"] != control]
        drugs = tuple(sorted(table["drug"])) + (control,)
        moa_broad = tuple(sorted(set(table["moa-broad"]) | {CONTROL_LABEL}))
        moa_fine = tuple(sorted(set(table["moa-fine"]) | {CONTROL_LABEL}))
        by_drug = table.set_index("drug")
        broad = [by_drug.at[d, "moa-broad"] for d in drugs[:-1]] + [CONTROL_LABEL]
        fine = [by_drug.at[d, "moa-fine"] for d in drugs[:-1]] + [CONTROL_LABEL]
        return cls(
            cell_line=tuple(sorted(cell_lines)),
            drug=drugs,
            moa_broad=moa_broad,
            moa_fine=moa_fine,
            drug_to_moa_broad=np.array([moa_broad.index(m) for m in broad], dtype=np.int32),
            drug_to_moa_fine=np.array([moa_fine.index(m) for m in fine], dtype=np.int32),
        )

    def sizes(self) -> dict[str, int]:
        return {task: len(getattr(self, task)) for task in TASKS}

    def encode(
        self, cell_line: pd.Categorical, drug: pd.Categorical, source: str, drug_table: Path
    ) -> np.ndarray:
        """(n, 2) int32 codes of cells' cell line and drug; unknown names are errors."""
        out = np.empty((len(drug), 2), dtype=np.int32)
        for col, (values, space, what) in enumerate(
            ((cell_line, self.cell_line, "cell line"), (drug, self.drug, "drug"))
        ):
            names = [str(c).strip() for c in values.categories]
            lookup = {name: i for i, name in enumerate(space)}
            used = np.unique(values.codes)
            if used.size and used[0] < 0:
                raise RaycellError(f"{source}: obs has cells with no {what}")
            unknown = [names[c] for c in used if names[c] not in lookup]
            if unknown:
                where = f"the drug table {drug_table}" if what == "drug" else "the label space"
                raise RaycellError(f"{source}: {what} {unknown[0]!r} is not in {where}")
            remap = np.array([lookup.get(n, -1) for n in names], dtype=np.int32)
            out[:, col] = remap[values.codes] if len(names) else 0
        return out

    def expand(self, codes: np.ndarray) -> np.ndarray:
        """(n, 2) cell-line/drug codes -> (n, 4) labels in TASKS order."""
        drug = codes[:, 1]
        return np.stack(
            [codes[:, 0], drug, self.drug_to_moa_broad[drug], self.drug_to_moa_fine[drug]],
            axis=1,
        ).astype(np.int64)

    def to_json(self) -> str:
        return json.dumps(
            {
                **{task: list(getattr(self, task)) for task in TASKS},
                "drug_to_moa_broad": self.drug_to_moa_broad.tolist(),
                "drug_to_moa_fine": self.drug_to_moa_fine.tolist(),
            },
            indent=1,
        )
