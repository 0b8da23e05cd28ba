"""FlowSep: language-queried separation by rectified flow (`specs/flowsep.py`): see README.md in this folder."""
