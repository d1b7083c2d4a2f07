"""Errors a user can cause and fix. The CLI prints their message as one line and exits 1."""


class StemstoreError(Exception):
    """A problem with the user's input or store, said in one line: what is wrong and where."""


def check_output_path(path, suffixes: tuple[str, ...]):
    """``path`` as a :class:`~pathlib.Path` if a file of one of ``suffixes`` may be written
    there; else a :class:`StemstoreError` saying why (wrong extension, a directory, a parent
    that is a file). Whether the file system lets it be written shows when it is written:
    wrap that in :func:`write_error`."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise StemstoreError(f"{path} is a directory: name a file to write")
    if path.suffix.lower() not in suffixes:
        found = f"'{path.suffix}'" if path.suffix else "no extension"
        raise StemstoreError(f"{path}: {found} is not a file type it can write (use {', '.join(suffixes)})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StemstoreError(f"{path}: {parent} is a file, not a directory")
            break
    return path


def write_error(path, exc: OSError) -> StemstoreError:
    """One line for a file that could not be written (permission, read-only or full disk)."""
    return StemstoreError(f"cannot write {path}: {exc.strerror or exc}")
