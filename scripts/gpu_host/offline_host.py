#!/usr/bin/env python3
"""Rebuild, check and install an offline bundle on a GPU host without a package index.

The host half of the offline recipe: standard library only, Python 3.8+, so this one file is
all the host needs (``pack`` also puts a copy of it into the bundle). The other half, which runs
here (a machine with a package registry) and gathers the wheels, packs them into parts and
stages each part for a transfer, is ``scripts/gpu_host/offline_bundle.py`` (``gather``, ``pack``,
``carry``).

On the host::

    python3 offline_host.py join PARTS_DIR              # or: append PART --into FILE, once per part
    python3 offline_host.py verify PARTS_DIR|FILE       # names each missing or corrupted part
    python3 offline_host.py unpack FILE --into DIR      # verifies against the manifest first
    python3 offline_host.py install --bundle DIR        # pip --no-index into DIR/site
    . DIR/env.sh && python3 DIR/offline_host.py check   # imports + MAX accelerator count

Exit codes: 0 success, 1 integrity or bundle error (missing/corrupt part, wrong order, bad
manifest), 2 usage error, 3 an external tool (pip, git) failed, 4 ``check`` found a problem.
See scripts/README.md for the whole recipe and its costs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_TOOL = 3
EXIT_CHECK = 4

MANIFEST_FORMAT = "maxwhisper-offline-bundle/1"
CHUNK = 1 << 20

# (module, distribution) pairs that `check` imports.
CHECK_MODULES: tuple[tuple[str, str], ...] = (
    ("max", "max"),
    ("whisper", "openai-whisper"),
    ("faster_whisper", "faster-whisper"),
    ("maxwhisper_lib", "maxwhisper-lib"),
)
INFO_DISTRIBUTIONS: tuple[str, ...] = ("max-core", "mojo-compiler", "torch", "ctranslate2", "numpy")

JUNK_NAMES = ("__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache", ".DS_Store")
PART_SUFFIX = re.compile(r"^(?P<bundle>.+)\.part(?P<index>\d+)$")

# Commands whose duration `main` reports (the long ones).
TIMED_COMMANDS = ("join", "unpack", "install")


class BundleError(Exception):
    """A failure reported to the user with an exit code (integrity problems by default)."""

    def __init__(self, message: str, exit_code: int = EXIT_INTEGRITY) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- small helpers


def say(message: str) -> None:
    """Progress line on stdout, flushed at once (long jobs are watched through pipes)."""
    print(message, flush=True)


def human_size(size: float) -> str:
    """Bytes as B/KiB/MiB/GiB with one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``55MiB``, ``64KiB``, ``1G`` or plain bytes -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 55MiB, 512KiB, 1000)")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return size


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def normalize_name(name: str) -> str:
    """PEP 503 project name: lowercase, runs of ``-_.`` -> ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(normalized project name, version) from a wheel file name."""
    fields = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(fields) < 5:
        raise BundleError(f"not a wheel file name: {filename}")
    return normalize_name(fields[0]), fields[1]


def duplicate_wheels(wheel_files: Iterable[Path]) -> dict[str, list[str]]:
    """Project names present in more than one wheel file (pip refuses to install those)."""
    seen: dict[str, list[str]] = {}
    for path in wheel_files:
        name, _ = wheel_name_version(path.name)
        seen.setdefault(name, []).append(path.name)
    return {name: files for name, files in seen.items() if len(files) > 1}


def run_tool(command: Sequence[str], what: str, shown: str | None = None) -> None:
    """Run an external command with inherited output; a failure becomes ``BundleError`` (exit 3).

    ``shown`` replaces the echoed command line when it would be too long to read.
    """
    say("$ " + (shown or " ".join(shlex.quote(str(part)) for part in command)))
    result = subprocess.run([str(part) for part in command], check=False)
    if result.returncode != 0:
        raise BundleError(f"{what} failed (exit {result.returncode})", EXIT_TOOL)


def part_name(bundle_file: str, index: int) -> str:
    """Deterministic part file name: ``<bundle file>.partNNN``, numbered from 1."""
    return f"{bundle_file}.part{index:03d}"


def manifest_name(bundle_name: str) -> str:
    return f"{bundle_name}.manifest.json"


# --------------------------------------------------------------------------- host commands


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and sanity-check a bundle manifest."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot read manifest {path}: {error}") from error
    if manifest.get("format") != MANIFEST_FORMAT:
        raise BundleError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    return manifest


def find_manifest(folder: Path, explicit: str | None, bundle_file: str | None = None) -> Path:
    """The manifest given, else the one in ``folder`` (for ``bundle_file`` when known)."""
    if explicit:
        return Path(explicit)
    candidates = sorted(folder.glob("*.manifest.json"))
    if bundle_file is not None:
        matching = [c for c in candidates if load_manifest(c).get("bundle_file") == bundle_file]
        candidates = matching or candidates
    if len(candidates) != 1:
        found = ", ".join(c.name for c in candidates) or "none"
        raise BundleError(
            f"need exactly one *.manifest.json in {folder} (found: {found}); "
            "name it with --manifest"
        )
    return candidates[0]


def optional_manifest(
    folder: Path, explicit: str | None, bundle_file: str
) -> dict[str, Any] | None:
    """The manifest if one is given or lies in ``folder``; None when there is none."""
    if explicit:
        return load_manifest(Path(explicit))
    for candidate in sorted(folder.glob("*.manifest.json")):
        manifest = load_manifest(candidate)
        if manifest.get("bundle_file") == bundle_file:
            return manifest
    return None


def check_part(path: Path, expected: dict[str, Any]) -> None:
    """Raise naming the part when it is missing, of the wrong size or has a bad checksum."""
    name = expected["name"]
    if not path.is_file():
        raise BundleError(f"missing part {expected['index']}: {name} not found in {path.parent}")
    size = path.stat().st_size
    if size != expected["size"]:
        raise BundleError(
            f"part {name}: {size} bytes, the manifest says {expected['size']} "
            "(truncated or still copying?)"
        )
    if sha256_file(path) != expected["sha256"]:
        raise BundleError(f"part {name}: sha256 mismatch (corrupted, or another bundle's part)")


def state_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".parts.json")


def command_append(args: argparse.Namespace) -> int:
    """Append one part to a growing file, in order, once (re-sending a part is harmless)."""
    part = Path(args.part)
    target = Path(args.into)
    match = PART_SUFFIX.match(part.name)
    if not match:
        raise BundleError(f"{part.name} is not named like BUNDLE.partNNN", EXIT_USAGE)
    bundle_file, index = match.group("bundle"), int(match.group("index"))
    if not part.is_file():
        raise BundleError(f"part {part.name} not found at {part}")
    manifest = optional_manifest(part.parent, args.manifest, bundle_file)
    expected_parts = {p["index"]: p for p in manifest["parts"]} if manifest else {}
    if manifest and index not in expected_parts:
        raise BundleError(
            f"{part.name} is not in the manifest (it lists parts 1..{len(expected_parts)})"
        )

    state_file = state_path(target)
    if state_file.is_file():
        state = json.loads(state_file.read_text())
    elif target.exists() and target.stat().st_size > 0:
        raise BundleError(
            f"{target} exists but was not built by append (no {state_file.name}): "
            "remove it or choose another --into"
        )
    else:
        state = {"bundle_file": bundle_file, "parts": []}
    if state["bundle_file"] != bundle_file:
        raise BundleError(
            f"{part.name} belongs to {bundle_file}, but {target} holds {state['bundle_file']}"
        )
    recorded = state["parts"]
    part_sha = sha256_file(part)
    if index <= len(recorded):
        if recorded[index - 1]["sha256"] != part_sha:
            raise BundleError(f"{part.name} differs from the part {index} already appended")
        say(
            f"{part.name} already appended; nothing to do ({describe_progress(recorded, manifest)})"
        )
        return EXIT_OK
    if index != len(recorded) + 1:
        raise BundleError(
            f"wrong order: {target.name} holds {len(recorded)} part(s); expected "
            f"{part_name(bundle_file, len(recorded) + 1)}, got {part.name}"
        )
    if manifest:
        check_part(part, expected_parts[index])

    recorded_size = sum(p["size"] for p in recorded)
    current_size = target.stat().st_size if target.exists() else 0
    if current_size < recorded_size:
        raise BundleError(
            f"{target} is shorter ({current_size} bytes) than the {len(recorded)} "
            f"parts recorded in {state_file.name} ({recorded_size}): start again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "r+b" if target.exists() else "wb") as out:
        if current_size > recorded_size:
            say(f"discarding {current_size - recorded_size} bytes of an interrupted append")
            out.truncate(recorded_size)
        out.seek(recorded_size)
        with open(part, "rb") as source:
            shutil.copyfileobj(source, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    recorded.append(
        {"index": index, "name": part.name, "size": part.stat().st_size, "sha256": part_sha}
    )
    state_file.write_text(json.dumps(state, indent=2) + "\n")
    say(
        f"appended {part.name} ({human_size(part.stat().st_size)}): "
        f"{describe_progress(recorded, manifest)}"
    )
    if manifest and len(recorded) == len(expected_parts):
        if sha256_file(target) != manifest["sha256"]:
            raise BundleError(f"{target} is complete but its sha256 differs from the manifest's")
        say(f"complete: {target} ({human_size(manifest['size'])}), sha256 matches the manifest")
    return EXIT_OK


def describe_progress(recorded: list[dict[str, Any]], manifest: dict[str, Any] | None) -> str:
    size = sum(p["size"] for p in recorded)
    if manifest is None:
        return f"{len(recorded)} part(s), {human_size(size)} so far"
    return (
        f"{len(recorded)}/{len(manifest['parts'])} parts, {human_size(size)} of "
        f"{human_size(manifest['size'])}"
    )


def numbered_parts(folder: Path) -> dict[str, dict[int, Path]]:
    """Bundle file -> {index: part path} for the ``*.partNNN`` files in ``folder``."""
    bundles: dict[str, dict[int, Path]] = {}
    for path in folder.iterdir():
        match = PART_SUFFIX.match(path.name)
        if match and path.is_file():
            bundles.setdefault(match.group("bundle"), {})[int(match.group("index"))] = path
    return bundles


def command_join(args: argparse.Namespace) -> int:
    """Check every part in a folder, then concatenate them in order into one file."""
    folder = Path(args.folder)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder of parts", EXIT_USAGE)
    if args.no_manifest:
        bundles = numbered_parts(folder)
        if len(bundles) != 1:
            raise BundleError(
                f"expected the parts of one bundle in {folder}, found: {sorted(bundles) or 'none'}"
            )
        bundle_file, found = next(iter(bundles.items()))
        for index in range(1, max(found) + 1):
            if index not in found:
                raise BundleError(f"missing part {index}: {part_name(bundle_file, index)}")
        ordered = [found[index] for index in sorted(found)]
        manifest = None
    else:
        manifest = load_manifest(find_manifest(folder, args.manifest))
        bundle_file = manifest["bundle_file"]
        ordered = []
        for expected in manifest["parts"]:
            path = folder / expected["name"]
            say(f"checking {expected['name']} ...")
            check_part(path, expected)
            ordered.append(path)
    output = Path(args.output) if args.output else folder / bundle_file
    whole = hashlib.sha256()
    with open(output, "wb") as out:
        for number, path in enumerate(ordered, 1):
            with open(path, "rb") as source:
                for block in iter(lambda: source.read(CHUNK), b""):
                    out.write(block)
                    whole.update(block)
            say(f"joined {path.name} ({number}/{len(ordered)})")
    if manifest is not None and whole.hexdigest() != manifest["sha256"]:
        raise BundleError(f"{output}: sha256 of the joined file differs from the manifest's")
    say(
        f"{output}: {human_size(output.stat().st_size)}"
        + (", sha256 matches the manifest" if manifest else " (no manifest: not verified)")
    )
    return EXIT_OK


def verify_bundle_file(path: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with a joined (or growing) bundle file, each naming the part it concerns."""
    problems: list[str] = []
    size = path.stat().st_size
    parts = manifest["parts"]
    with open(path, "rb") as handle:
        for position, expected in enumerate(parts):
            digest = hashlib.sha256()
            remaining = expected["size"]
            while remaining:
                block = handle.read(min(CHUNK, remaining))
                if not block:
                    break
                digest.update(block)
                remaining -= len(block)
            if remaining:
                missing = [part["name"] for part in parts[position:]]
                cut = "" if remaining == expected["size"] else f" ({expected['name']} cut short)"
                problems.append(
                    f"incomplete: the file ends after {size} of {manifest['size']} bytes{cut}; "
                    f"missing {missing[0]}" + (f" .. {missing[-1]}" if len(missing) > 1 else "")
                )
                break
            if digest.hexdigest() != expected["sha256"]:
                problems.append(f"part {expected['name']}: sha256 mismatch in the bytes it covers")
    if size > manifest["size"]:
        problems.append(
            f"{size - manifest['size']} bytes more than the manifest's {manifest['size']}"
        )
    return problems


def command_verify(args: argparse.Namespace) -> int:
    """Check a folder of parts or a joined file against the manifest."""
    target = Path(args.target)
    if target.is_dir():
        manifest = load_manifest(find_manifest(target, args.manifest))
        for expected in manifest["parts"]:
            check_part(target / expected["name"], expected)
            say(f"ok {expected['name']}")
        say(f"all {len(manifest['parts'])} parts match the manifest")
        return EXIT_OK
    if not target.is_file():
        raise BundleError(f"{target} does not exist")
    manifest = load_manifest(find_manifest(target.parent, args.manifest, target.name))
    problems = verify_bundle_file(target, manifest)
    if problems:
        raise BundleError(f"{target} does not match the manifest:\n  " + "\n  ".join(problems))
    say(
        f"{target} matches the manifest ({len(manifest['parts'])} parts, "
        f"{human_size(manifest['size'])}, sha256 {manifest['sha256'][:16]}...)"
    )
    return EXIT_OK


def safe_members(archive: tarfile.TarFile, destination: Path) -> list[tarfile.TarInfo]:
    """Archive members, refusing absolute paths, ``..`` and links (Python 3.8 has no filters)."""
    members = archive.getmembers()
    root = destination.resolve()
    for member in members:
        resolved = (root / member.name).resolve()
        if member.name.startswith("/") or (resolved != root and root not in resolved.parents):
            raise BundleError(f"unsafe path in archive: {member.name}")
        if not (member.isfile() or member.isdir()):
            raise BundleError(f"unexpected member type in archive: {member.name}")
    return members


def command_unpack(args: argparse.Namespace) -> int:
    """Verify a joined bundle (unless --no-verify) and extract it into a folder."""
    bundle = Path(args.bundle)
    if not bundle.is_file():
        raise BundleError(f"{bundle} does not exist")
    if not args.no_verify:
        manifest = load_manifest(find_manifest(bundle.parent, args.manifest, bundle.name))
        problems = verify_bundle_file(bundle, manifest)
        if problems:
            raise BundleError(f"{bundle} does not match the manifest:\n  " + "\n  ".join(problems))
        say(f"{bundle} matches the manifest")
    destination = Path(args.into)
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle, "r:*") as archive:
        members = safe_members(archive, destination)
        total = sum(member.size for member in members) or 1
        done, next_report = 0, 0.1
        for member in members:
            if hasattr(tarfile, "data_filter"):
                archive.extract(member, destination, filter="data")
            else:  # pragma: no cover - Python < 3.8.17
                archive.extract(member, destination)
            done += member.size
            if done / total >= next_report:
                say(f"  unpacked {human_size(done)} of {human_size(total)}")
                next_report += 0.1
    say(f"unpacked {len(members)} entries into {destination}")
    return EXIT_OK


def command_install(args: argparse.Namespace) -> int:
    """pip-install every wheel of an unpacked bundle, offline, into a folder or this interpreter."""
    bundle = Path(args.bundle).resolve()
    wheels_dir = bundle / "wheels"
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise BundleError(f"no wheels in {wheels_dir}")
    duplicates = duplicate_wheels(wheels)
    if duplicates:
        raise BundleError(f"more than one version of a package in {wheels_dir}: {duplicates}")
    command = [args.python, "-m", "pip", "install", "--no-index", "--no-deps",
               "--find-links", str(wheels_dir), "--disable-pip-version-check",
               "--no-warn-script-location"]  # fmt: skip
    site = None
    if not args.into_interpreter:
        site = Path(args.target).resolve() if args.target else bundle / "site"
        command += ["--upgrade", "--target", str(site)]
    say(f"installing {len(wheels)} wheels {'into ' + str(site) if site else 'into ' + args.python}")
    shown = " ".join(shlex.quote(part) for part in command) + f" {wheels_dir}/*.whl"
    run_tool(command + [str(wheel) for wheel in wheels], "pip install", shown)
    if site is None:
        say("installed into the interpreter's environment; nothing to export")
        return EXIT_OK
    lines = [f"export PYTHONPATH={shlex.quote(str(site))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if (site / "bin").is_dir():
        lines.append(f"export PATH={shlex.quote(str(site / 'bin'))}:$PATH")
    jupyter = site / "share" / "jupyter"
    if jupyter.is_dir():  # nbconvert's templates, the kernel spec: not found there otherwise
        lines.append(
            f"export JUPYTER_PATH={shlex.quote(str(jupyter))}${{JUPYTER_PATH:+:$JUPYTER_PATH}}"
        )
    env_file = bundle / "env.sh"
    env_file.write_text("\n".join(lines) + "\n")
    say(f"done. Before using it, run (or: . {env_file}):")
    for line in lines:
        say("  " + line)
    return EXIT_OK


def distribution_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def command_check(args: argparse.Namespace) -> int:
    """Import the project's key modules, print versions and how many accelerators MAX sees."""
    import importlib

    modules = list(CHECK_MODULES)
    if args.module:
        modules = [
            tuple(spec.split("=", 1)) if "=" in spec else (spec, spec) for spec in args.module
        ]
    failures = []
    say(f"python {sys.version.split()[0]} at {sys.executable}")
    for module_name, distribution in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # any import-time failure is a finding, not a crash
            failures.append(module_name)
            say(f"FAIL {module_name}: {type(error).__name__}: {error}")
            continue
        version = distribution_version(distribution) or getattr(module, "__version__", "?")
        location = getattr(module, "__file__", None) or next(
            iter(getattr(module, "__path__", [])), "?"
        )
        say(f"ok   {module_name} {version} ({location})")
    for distribution in INFO_DISTRIBUTIONS:
        version = distribution_version(distribution)
        if version:
            say(f"     {distribution} {version}")
    if not args.module:
        accelerators = max_accelerator_count()
        say(f"MAX accelerators: {accelerators if accelerators is not None else 'unknown'}")
        if accelerators:
            say(f"MAX accelerator architecture: {max_accelerator_architecture()}")
        if args.require_accelerator and not accelerators:
            failures.append("MAX accelerator")
    if failures:
        say(f"check failed: {', '.join(failures)}")
        return EXIT_CHECK
    say("check passed")
    return EXIT_OK


def max_accelerator_count() -> int | None:
    """How many accelerators MAX's driver sees, or None when max cannot tell."""
    try:
        from max.driver import accelerator_count
    except Exception as error:
        say(f"cannot ask MAX for accelerators: {type(error).__name__}: {error}")
        return None
    return int(accelerator_count())


def max_accelerator_architecture() -> str:
    """The first accelerator's architecture as MAX names it (``sm_90a`` on an H100/H200): the
    target to precompile for (``python -m maxwhisper_lib.lab.precompile --target cuda:ARCH``)."""
    try:
        from max.driver import Accelerator

        device = Accelerator()
        return f"{device.api}:{device.architecture_name}"
    except Exception as error:  # reported, not fatal: the count already said what matters
        return f"unknown ({type(error).__name__}: {error})"


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offline_host.py",
        description=__doc__.split("\n\n", 1)[0],
        epilog="Exit codes: 0 ok, 1 integrity/bundle error, 2 usage, 3 tool failed, "
        "4 check failed. Gathering and packing: offline_bundle.py.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    append = commands.add_parser("append", help="append one part to a growing file (host)")
    append.add_argument("part")
    append.add_argument("--into", required=True, help="the file being rebuilt")
    append.add_argument("--manifest", help="default: a manifest beside the part, if any")
    append.set_defaults(handler=command_append)

    join = commands.add_parser("join", help="check and concatenate a folder of parts (host)")
    join.add_argument("folder")
    join.add_argument("--manifest")
    join.add_argument(
        "--no-manifest", action="store_true", help="join by part numbers alone, without checksums"
    )
    join.add_argument("--output", help="default: FOLDER/<bundle file>")
    join.set_defaults(handler=command_join)

    verify = commands.add_parser("verify", help="check parts or a joined file (host)")
    verify.add_argument("target", help="folder of parts, or the joined/growing file")
    verify.add_argument("--manifest")
    verify.set_defaults(handler=command_verify)

    unpack = commands.add_parser("unpack", help="verify and extract a joined bundle (host)")
    unpack.add_argument("bundle")
    unpack.add_argument("--into", required=True)
    unpack.add_argument("--manifest")
    unpack.add_argument("--no-verify", action="store_true")
    unpack.set_defaults(handler=command_unpack)

    install = commands.add_parser("install", help="pip install the bundle's wheels offline (host)")
    install.add_argument(
        "--bundle",
        default=str(Path(__file__).resolve().parent),
        help="unpacked bundle folder (default: where this script lies)",
    )
    install.add_argument("--target", help="site folder (default: BUNDLE/site)")
    install.add_argument(
        "--into-interpreter",
        action="store_true",
        help="install into --python's own environment instead of a folder",
    )
    install.add_argument("--python", default=sys.executable)
    install.set_defaults(handler=command_install)

    check = commands.add_parser("check", help="import max, whisper, faster_whisper, ... (host)")
    check.add_argument(
        "--require-accelerator", action="store_true", help="fail when MAX sees no accelerator"
    )
    check.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="MODULE[=DIST]",
        help="check these modules instead of the default set",
    )
    check.set_defaults(handler=command_check)
    return parser


def run_cli(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, timed: Sequence[str]
) -> int:
    """Parse ``argv``, run the chosen command, turn ``BundleError`` into its exit code.

    Shared with offline_bundle.py; ``timed`` names the commands whose duration is reported.
    """
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    started = time.time()
    try:
        code = handler(args)
    except BundleError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.command in timed:
        say(f"({args.command} took {time.time() - started:.1f} s)")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv, TIMED_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
