"""Pure losses, ``f(...) -> (loss, aux)``, each with its formula and paper in the docstring:
contrastive, ring, SDM, ranking, soft labels, token matching, multi-label, intra-modal, MLM,
flow paths and the flow matching loss."""
