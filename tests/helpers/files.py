"""Reading a folder tree for byte-for-byte comparisons."""
import os
from typing import Dict


def read_tree(root: str) -> Dict[str, bytes]:
    """``{path relative to root: bytes}`` of every file below ``root``."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out
