"""AAC→ATR (seed system 9; Labbé et al., "Killing two birds with one stone: Can an audio
captioning system also be used for audio-text retrieval?", 2023): an audio captioner trained only
to caption (``specs/aac_atr.py``) whose teacher-forced likelihood of a caption given a clip
ranks clips for a caption and, normalised per caption, captions for a clip."""
