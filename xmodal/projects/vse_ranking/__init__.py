"""vse_ranking — image-text matching with a global ranking loss (2015): see README.md in this folder."""
