"""MVL-SIB (multilingual cross-modal topical matching): see README.md in this folder."""
