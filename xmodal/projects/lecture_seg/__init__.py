"""Unsupervised audio-visual lecture segmentation (seed system 17): clip embeddings learned by
matching narration with its view (``specs/lecture_seg.py``), segmented by TW-FINCH
(``xmodal.evaluate.finch``) and scored by ``xmodal.evaluate.segment_sequences``."""
