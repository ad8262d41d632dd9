"""The export's one error type, and the one-line form of an exporter or runtime failure."""


class ExportError(RuntimeError):
    """The export (or its check) failed; the message is one line."""


def one_line(exc: BaseException) -> str:
    """The innermost cause of a failure, first line only: ``"TypeName: message"``."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [line.strip() for line in str(root).strip().splitlines() if line.strip()]
    return f"{type(root).__name__}: {lines[0] if lines else ''}"
