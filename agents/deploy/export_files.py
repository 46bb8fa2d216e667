"""What export.py checks before and after it writes: the opset it can honour, a folder it can
write in, files it would replace, and that the model written declares the opset its metadata
will state. Both files are written atomically (agents/ppo/atomic_files.py): a killed export
leaves the old pair or none."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from agents.deploy.onnx_opset import onnx_opsets
from envs.errors import ConfigError, ModelError

# torch.onnx's exporter (dynamo=True) writes opset 18 and newer only; asked for less, it used to
# write 18 anyway while the metadata said otherwise, and the runtime refused the pair.
MIN_OPSET = 18
SOURCE = "<export>"


def check_opset(opset) -> int:
    from onnx.defs import onnx_opset_version  # the newest opset the installed onnx knows

    newest = onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(SOURCE, "opset", opset, f"the ONNX exporter writes opsets {MIN_OPSET} to {newest} "
                                                  "(the installed onnx's newest)")
    return opset


def check_writable(paths: list[Path], out: str | Path | None = None) -> None:
    """Before any work: refuse a folder the files cannot be written in (a file on the way, or no
    write access: an OSError once the model was built). `out`: the folder as given, for the
    message (default: the first file's)."""
    for path in paths:
        existing = next(folder for folder in path.parents if folder.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problem = "is a file, not a folder" if not existing.is_dir() else "is not writable"
            raise ConfigError(SOURCE, "out", str(out if out is not None else path.parent),
                              f"cannot write {path.name} there: {existing} {problem}")


def check_name_value(name) -> None:
    """``name`` is a file stem inside ``out``, nothing else: a path separator (either platform's),
    ``..``, an absolute path or an empty name is refused (``name=../x`` wrote ``x.onnx`` and
    ``x.json`` beside ``out``, not in it)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(SOURCE, "name", name, "must be a non-empty file name (the stem of <out>/<name>.onnx "
                                                "and .json), such as 'policy'")
    problem = ("is an absolute path" if name.startswith(("/", "\\")) or PureWindowsPath(name).is_absolute()
               else "contains a path separator" if "/" in name or "\\" in name
               else "is '..'" if name == ".." else None)
    suffix = PurePosixPath(name).suffix.lower()
    if problem is None and suffix in (".onnx", ".json"):  # name=city.onnx wrote city.onnx.onnx and city.onnx.json
        raise ConfigError(SOURCE, "name", name, f"ends in {suffix}: export.py adds .onnx and .json to the name "
                                                f"itself; give name={name[:-len(suffix)] or 'policy'}")
    if problem:
        raise ConfigError(SOURCE, "name", name, f"{problem}: the name is a file name inside out, never a path "
                                                "(choose the folder with out=, the file name with name=)")


def check_name(name, onnx_path: Path, meta_path: Path) -> None:
    """`check_name_value`, and the runtime and the service find a model's metadata beside it, the
    model's name with ``.json`` for ``.onnx``: a name without a stem of its own would part the pair
    (the service would look for ``.onnx``'s metadata as ``.onnx.json``)."""
    check_name_value(name)
    if onnx_path.with_suffix(".json") != meta_path:
        raise ConfigError(SOURCE, "name", name, f"the runtime would look for {onnx_path.name}'s metadata as "
                                                f"{onnx_path.with_suffix('.json').name}, not {meta_path.name}: "
                                                "give a file name such as 'policy'")


def check_destination(paths: list[Path], overwrite: bool, out: str | Path | None = None) -> None:
    """`check_writable`, and refuse to replace an existing export unless asked to."""
    check_writable(paths, out)
    if overwrite:
        return
    for path in paths:
        if path.exists():
            raise ConfigError(SOURCE, "out", str(path), "already exists; overwrite=true replaces it "
                                                        "(or choose another out= or name=)")


def check_written_opset(path: Path, opset: int) -> None:
    """The default-domain opset the file declares must be the one asked for (and recorded)."""
    try:
        written = onnx_opsets(Path(path).read_bytes()).get("")
    except ValueError as error:
        raise ModelError(str(path), "opset_import", None, f"the exported file is not readable ONNX ({error})") from None
    if written != opset:
        raise ModelError(SOURCE, "opset", opset, f"the exporter wrote opset {written} instead; "
                                                 "nothing was written (choose an opset it supports)")


__all__ = ["MIN_OPSET", "check_destination", "check_name", "check_name_value", "check_opset", "check_writable",
           "check_written_opset"]
