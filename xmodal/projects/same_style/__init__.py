"""same_style — one embedding for image, text and image+text (same-style product retrieval): see README.md in this folder."""
