"""The trade-off study of seed 003 at small scale (needs detectron2 and detrex, imported inside functions)."""
