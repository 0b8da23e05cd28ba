"""GQR's benchmark: queries and graded relevance from the folders the archive's curators filed
each drawing in (read by neither retriever), split into dev and test queries (evaluator.py's
module docstring says how)."""
from __future__ import annotations

import numpy as np

from xmodal.evaluate import heldout
from xmodal.evaluate.lexical import words

NOT_A_SUBJECT = ("unsorted",)   # the archive's tree of drawings nobody filed


def normalise(text: str) -> str:
    return " ".join(words(text))


def folder_relevance(folders: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """Queries (folder names, sorted) and graded relevance [Nq, N] (module docstring) from each
    item's folders (``"food/fruit"`` paths)."""
    def query_of(path):
        return normalise(path.rsplit("/", 1)[-1].replace("_", " "))

    # Each item's folders with every folder above them: filed in food/fruit is filed in food.
    filed = [{"/".join(p.split("/")[:i + 1]) for p in paths if p.split("/")[0] not in
              NOT_A_SUBJECT for i in range(p.count("/") + 1)} for paths in folders]
    paths_of: dict[str, set] = {}
    for path in set().union(*filed) if filed else ():
        if query_of(path):
            paths_of.setdefault(query_of(path), set()).add(path)
    queries = sorted(paths_of)
    if not queries:
        raise ValueError("gqr: no eval item is filed in a folder; nothing to query")
    rel = np.zeros((len(queries), len(folders)), np.float32)
    for i, q in enumerate(queries):
        parents = {p.rsplit("/", 1)[0] for p in paths_of[q] if "/" in p}
        for d, item in enumerate(filed):
            rel[i, d] = 2.0 if item & paths_of[q] else 1.0 if item & parents else 0.0
    return queries, rel


def dev_mask(queries: list[str]) -> np.ndarray:
    # Unsalted: folder names are under no other sha1 rule (and this is the measured split).
    return heldout.dev_half(queries, salt="")
