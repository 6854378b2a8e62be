#!/usr/bin/env python3
"""Prepare an offline GPU host: gather wheels, pack them in small parts, rebuild and install there.

Here (a machine with a package registry)::

    python scripts/offline_host.py gather    # cp312 manylinux wheels -> .stage/wheels/
    python scripts/offline_host.py pack --include weights/tiny.en --include data
                                             # -> .stage/bundle/*.partNNN + manifest

On the host (standard library only, Python 3.8+)::

    python3 offline_host.py join PARTS_DIR              # or: append PART --into FILE, once per part
    python3 offline_host.py unpack FILE --into DIR      # verifies against the manifest first
    python3 offline_host.py install --bundle DIR        # pip --no-index into DIR/site
    . DIR/env.sh && python3 DIR/offline_host.py check   # imports + MAX accelerator count

Exit codes: 0 success, 1 integrity or bundle error (missing/corrupt part, wrong order, bad
manifest), 2 usage error, 3 an external tool (pip, git) failed, 4 ``check`` found a problem.
See scripts/README.md for the whole recipe and its costs.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_TOOL = 3
EXIT_CHECK = 4

MANIFEST_FORMAT = "maxwhisper-offline-bundle/1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STAGE_DIR = PROJECT_ROOT / ".stage"
DEFAULT_WHEELS_DIR = STAGE_DIR / "wheels"
DEFAULT_BUNDLE_DIR = STAGE_DIR / "bundle"
DEFAULT_CARRY_DIR = STAGE_DIR / "carry"
DEFAULT_BUNDLE_NAME = "maxwhisper-offline"
DEFAULT_PART_SIZE = "55MiB"
CHUNK = 1 << 20

# What the GPU host needs for this project, beyond what it already has. One place: edit here,
# or pass requirements on the command line / with -r FILE (and --no-default-requirements).
DEFAULT_REQUIREMENTS: tuple[str, ...] = (
    # MAX Graph: max pins the exact max-core / mojo-compiler builds it needs.
    "max==26.7.0",
    "max-core",
    "max-mojo-libs",
    "max-shmem-libs",
    "mojo-compiler",
    "mojo-compiler-mojo-libs",
    "msgspec",
    "taskgroup",
    "exceptiongroup",
    # Reference implementations benchmarked against.
    "openai-whisper",
    "faster-whisper",
    # maxwhisper_lib's own light dependencies (the project wheel is installed with --no-deps).
    "tiktoken",
    "safetensors",
    "av",
    "soundfile",
    "jiwer",
    "tqdm",
    "pandas",
    "matplotlib",
    "papermill",
    "nbconvert",
    "nbval",
    "ipykernel",
)

# Packages a GPU host is expected to have already (PyTorch and its CUDA stack): never carried.
# fnmatch patterns over normalized names; --exclude adds, --no-default-excludes drops these.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torchaudio",
    "triton",
    "nvidia-*",
    "cuda-*",
    "numpy",
)

# Published only as source distributions: built here into pure-Python wheels before resolving.
DEFAULT_BUILD_FROM_SOURCE: tuple[str, ...] = ("openai-whisper",)

DEFAULT_PYTHON_VERSION = "3.12"
DEFAULT_GLIBC = "2.35"  # max-core ships manylinux_2_34 wheels; most CUDA hosts have glibc >= 2.35
DEFAULT_ARCH = "x86_64"

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


# --------------------------------------------------------------------------- gather (here)


def platform_tags(glibc: str, arch: str = DEFAULT_ARCH) -> list[str]:
    """manylinux tags a host with this glibc accepts, newest first (pip matches each exactly)."""
    match = re.fullmatch(r"2\.(\d+)", glibc)
    if not match:
        raise BundleError(f"glibc version must look like 2.35, not {glibc!r}", EXIT_USAGE)
    newest = int(match.group(1))
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{alias}_{arch}" for minor, alias in legacy.items() if minor <= newest]
    return tags


def target_environment(python_version: str, platforms: Sequence[str]) -> dict[str, str]:
    """PEP 508 marker environment of the target (pip evaluates markers for *this* interpreter)."""
    arch = DEFAULT_ARCH
    for tag in platforms:
        for candidate in ("x86_64", "aarch64", "ppc64le", "s390x", "armv7l", "i686"):
            if tag.endswith("_" + candidate):
                arch = candidate
    full_version = python_version if python_version.count(".") >= 2 else python_version + ".0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full_version,
        "os_name": "posix",
        "platform_machine": arch,
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full_version,
        "platform_python_implementation": "CPython",
        "python_version": ".".join(python_version.split(".")[:2]),
        "sys_platform": "linux",
    }


def _packaging() -> tuple[Any, Any]:
    """(Requirement, Version) from ``packaging``, or pip's vendored copy (gather side only)."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # pragma: no cover - pip always vendors it
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import Version
    return Requirement, Version


def read_requirement_lines(lines: Iterable[str]) -> list[str]:
    """Requirement strings from a requirements file's lines (comments, blanks, options skipped)."""
    found = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            found.append(line)
    return found


def read_host_packages(lines: Iterable[str]) -> dict[str, str | None]:
    """Name -> version from ``pip freeze`` output (bare names count as present too)."""
    host: dict[str, str | None] = {}
    for line in read_requirement_lines(lines):
        if " @ " in line:
            host[normalize_name(line.split(" @ ", 1)[0])] = None
            continue
        name, _, version = line.partition("==")
        host[normalize_name(name.strip())] = version.strip() or None
    return host


class ExclusionPolicy:
    """Decides which packages the host already has and so are not carried."""

    def __init__(self, patterns: Sequence[str], host_versions: dict[str, str | None]) -> None:
        self.patterns = [normalize_name(pattern) for pattern in patterns]
        self.host_versions = host_versions

    def reason(self, requirement: Any) -> str | None:
        """Why ``requirement`` is left to the host, or None to carry it."""
        name = normalize_name(requirement.name)
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return f"matches exclude pattern {pattern!r}"
        if name in self.host_versions:
            version = self.host_versions[name]
            if version is None:
                return "listed as on the host"
            if not requirement.specifier or requirement.specifier.contains(
                version, prereleases=True
            ):
                return f"host has {version}"
        return None


class Selection:
    """What the dependency walk chose: wheels to carry, packages left to the host, gaps."""

    def __init__(self) -> None:
        self.carried: dict[str, dict[str, Any]] = {}  # name -> {"item", "extras", "required_by"}
        self.excluded: dict[str, dict[str, Any]] = {}  # name -> {"reason", "required_by"}
        self.missing: dict[str, str] = {}  # name -> requirement string (marker dropped)
        self.host_too_old: list[str] = []


def select_packages(
    report: dict[str, Any],
    roots: Sequence[str],
    policy: ExclusionPolicy,
    environment: dict[str, str],
) -> Selection:
    """Walk the resolved graph from ``roots`` with the target's markers, stopping at exclusions.

    pip's report holds every package pip resolved (for this interpreter's markers, and including
    whatever only excluded packages need); this keeps exactly what the target must be given.
    """
    Requirement, _ = _packaging()
    items = {normalize_name(item["metadata"]["name"]): item for item in report["install"]}
    selection = Selection()
    expanded: set[tuple[str, str]] = set()
    queue: list[tuple[Any, str]] = [
        (requirement, "(requested)")
        for requirement in map(Requirement, roots)
        if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""})
    ]
    while queue:
        requirement, parent = queue.pop(0)
        name = normalize_name(requirement.name)
        reason = policy.reason(requirement)
        if reason is not None:
            entry = selection.excluded.setdefault(name, {"reason": reason, "required_by": []})
            entry["required_by"].append(parent)
            continue
        if name in policy.host_versions and policy.host_versions[name] is not None:
            note = f"{name}: host has {policy.host_versions[name]}, {parent} needs {requirement}"
            if note not in selection.host_too_old:
                selection.host_too_old.append(note)
        if name not in items:
            bare = Requirement(str(requirement))
            bare.marker = None
            selection.missing.setdefault(name, str(bare))
            continue
        entry = selection.carried.setdefault(
            name, {"item": items[name], "extras": set(), "required_by": []}
        )
        if parent not in entry["required_by"]:
            entry["required_by"].append(parent)
        entry["extras"].update(normalize_name(extra) for extra in requirement.extras)
        metadata = items[name]["metadata"]
        for extra in sorted({"", *entry["extras"]}):
            if (name, extra) in expanded:
                continue
            expanded.add((name, extra))
            for line in metadata.get("requires_dist") or []:
                dependency = Requirement(line)
                if dependency.marker is None or dependency.marker.evaluate(
                    {**environment, "extra": extra}
                ):
                    queue.append((dependency, f"{metadata['name']} {metadata['version']}"))
    return selection


def pip_target_options(python_version: str, platforms: Sequence[str]) -> list[str]:
    """pip options that pick wheels for the target interpreter instead of this one."""
    options = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for tag in platforms:
        options += ["--platform", tag]
    return options


def build_local_wheels(requirements: Sequence[str], built_dir: Path) -> None:
    """Build source-only packages into pure-Python wheels under ``built_dir``."""
    built_dir.mkdir(parents=True, exist_ok=True)
    for requirement in requirements:
        run_tool(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", built_dir, requirement],
            f"building a wheel of {requirement}",
        )
    for wheel in built_dir.glob("*.whl"):
        python_tag, abi_tag, platform_tag = wheel.name[: -len(".whl")].split("-")[-3:]
        if abi_tag != "none" or platform_tag != "any":
            raise BundleError(
                f"{wheel.name} was built for this machine ({python_tag}-{abi_tag}-{platform_tag}),"
                " so it cannot go to another host: find a binary wheel for the target instead"
            )


NO_MATCH = re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)")


def resolve(
    requirements: Sequence[str], target_options: Sequence[str], built_dir: Path, work_dir: Path
) -> tuple[dict[str, Any] | None, str]:
    """pip's dry-run resolution report for the target, or (None, pip's error output)."""
    report_path = work_dir / "resolution.json"
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--report", str(report_path), "--target", str(work_dir / "never-written"),
        "--find-links", str(built_dir), *target_options, *requirements,
    ]  # fmt: skip
    say(f"resolving {len(requirements)} requirements for the target with pip ...")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None, result.stderr + result.stdout
    return json.loads(report_path.read_text()), ""


def resolve_for_target(
    roots: Sequence[str],
    policy: ExclusionPolicy,
    target_options: Sequence[str],
    environment: dict[str, str],
    build_from_source: Sequence[str],
    built_dir: Path,
    work_dir: Path,
) -> tuple[Selection, list[str]]:
    """Resolve, building sdist-only packages and re-resolving for target-only markers as needed.

    Returns the selection and the root list actually resolved (roots plus target-only needs).
    """
    Requirement, _ = _packaging()
    wanted = {normalize_name(name) for name in build_from_source}
    to_build = [root for root in roots if normalize_name(Requirement(root).name) in wanted]
    if to_build:
        build_local_wheels(to_build, built_dir)
    built_names = {normalize_name(Requirement(root).name) for root in to_build}
    resolved_roots = list(roots)
    for _attempt in range(6):
        report, errors = resolve(resolved_roots, target_options, built_dir, work_dir)
        if report is None:
            match = NO_MATCH.search(errors)
            name = normalize_name(match.group(1)) if match else None
            if name is None or name in built_names:
                raise BundleError("pip could not resolve for the target:\n" + errors, EXIT_TOOL)
            say(f"{name} has no wheel for the target; trying to build a pure-Python wheel of it")
            spec = next(
                (r for r in resolved_roots if normalize_name(Requirement(r).name) == name), name
            )
            build_local_wheels([spec], built_dir)
            built_names.add(name)
            continue
        selection = select_packages(report, resolved_roots, policy, environment)
        if not selection.missing:
            return selection, resolved_roots
        say(
            "the target's markers need more than pip resolved here: " + ", ".join(selection.missing)
        )
        resolved_roots += list(selection.missing.values())
    raise BundleError("resolution did not settle after 6 rounds", EXIT_TOOL)


def hashed_requirements(selection: Selection) -> list[str]:
    """``name==version --hash=...`` lines pinning exactly the resolved files."""
    lines = []
    for name in sorted(selection.carried):
        item = selection.carried[name]["item"]
        line = f"{name}=={item['metadata']['version']}"
        archive_info = item["download_info"].get("archive_info", {})
        hashes = archive_info.get("hashes") or {}
        if "sha256" in hashes:
            line += f" --hash=sha256:{hashes['sha256']}"
        lines.append(line)
    if any("--hash" in line for line in lines) and not all("--hash" in line for line in lines):
        lines = [line.split(" --hash", 1)[0] for line in lines]  # pip wants all or none
    return lines


def same_version(left: str, right: str) -> bool:
    """Whether two version strings name the same release (``1.0`` == ``1.0.0``)."""
    _, version_class = _packaging()
    try:
        return bool(version_class(left) == version_class(right))
    except ValueError:
        return left == right


def prune_wheels(wheels_dir: Path, keep: dict[str, str | None]) -> list[str]:
    """Delete wheels other than ``keep`` (normalized name -> version, None: any); return them."""
    removed = []
    for wheel in sorted(wheels_dir.glob("*.whl")):
        name, version = wheel_name_version(wheel.name)
        wanted = keep.get(name, "")
        if name not in keep or (wanted is not None and not same_version(version, wanted)):
            wheel.unlink()
            removed.append(wheel.name)
    return removed


def wheel_table(wheels_dir: Path) -> tuple[list[tuple[str, int]], int]:
    """(file name, size) rows by size, largest first, and the total."""
    rows = sorted(
        ((wheel.name, wheel.stat().st_size) for wheel in wheels_dir.glob("*.whl")),
        key=lambda row: (-row[1], row[0]),
    )
    return rows, sum(size for _, size in rows)


def command_gather(args: argparse.Namespace) -> int:
    """Download wheels for the target into ``--dest``, leaving out what the host has."""
    roots: list[str] = [] if args.no_default_requirements else list(DEFAULT_REQUIREMENTS)
    for requirements_file in args.requirements_file:
        roots += read_requirement_lines(Path(requirements_file).read_text().splitlines())
    roots += args.requirement
    if not roots:
        raise BundleError("nothing to gather: no requirements given", EXIT_USAGE)
    patterns = ([] if args.no_default_excludes else list(DEFAULT_EXCLUDES)) + args.exclude
    host_versions: dict[str, str | None] = {}
    for host_file in args.host_packages:
        host_versions.update(read_host_packages(Path(host_file).read_text().splitlines()))
    policy = ExclusionPolicy(patterns, host_versions)
    platforms = args.platform or platform_tags(args.glibc, args.arch)
    target_options = pip_target_options(args.python_version, platforms)
    environment = target_environment(args.python_version, platforms)
    build_from_source = [] if args.no_default_builds else list(DEFAULT_BUILD_FROM_SOURCE)
    build_from_source += args.build_from_source
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    built_dir = dest.parent / (dest.name + "-built")
    if built_dir.exists():
        shutil.rmtree(built_dir)
    say(f"target: CPython {args.python_version}, {platforms[0]} .. {platforms[-1]}")
    say(
        f"left to the host: {', '.join(patterns) or 'nothing'}"
        + (f" + {len(host_versions)} packages from --host-packages" if host_versions else "")
    )
    with tempfile.TemporaryDirectory(prefix="offline-host-") as work:
        selection, resolved_roots = resolve_for_target(
            roots, policy, target_options, environment, build_from_source, built_dir, Path(work)
        )
        for note in selection.host_too_old:
            say(f"note: carrying although the host has it: {note}")
        for name in sorted(selection.excluded):
            entry = selection.excluded[name]
            say(
                f"left to host: {name} ({entry['reason']}; needed by "
                f"{', '.join(sorted(set(entry['required_by'])))})"
            )
        if args.dry_run:
            for name in sorted(selection.carried):
                item = selection.carried[name]["item"]["metadata"]
                say(f"would carry: {item['name']} {item['version']}")
            return EXIT_OK
        requirements_path = Path(work) / "pinned.txt"
        requirements_path.write_text("\n".join(hashed_requirements(selection)) + "\n")
        run_tool(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", dest,
             "--find-links", built_dir, *target_options, "-r", requirements_path],
            "downloading wheels",
        )  # fmt: skip
    keep: dict[str, str | None] = {
        name: entry["item"]["metadata"]["version"] for name, entry in selection.carried.items()
    }
    if not args.no_project:
        project_wheel_dir = dest.parent / (dest.name + "-project")
        shutil.rmtree(project_wheel_dir, ignore_errors=True)
        run_tool(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", project_wheel_dir,
             args.project],
            "building the project wheel",
        )  # fmt: skip
        for wheel in project_wheel_dir.glob("*.whl"):
            keep[wheel_name_version(wheel.name)[0]] = None
            for old in dest.glob(wheel.name.split("-", 1)[0] + "-*.whl"):
                old.unlink()
            shutil.move(str(wheel), str(dest / wheel.name))
        shutil.rmtree(project_wheel_dir)
    for removed in prune_wheels(dest, keep):
        say(f"removed stale wheel: {removed}")
    duplicates = duplicate_wheels(dest.glob("*.whl"))
    if duplicates:
        raise BundleError(f"more than one version in {dest}: {duplicates}")
    rows, total = wheel_table(dest)
    say(f"\n{len(rows)} wheels in {dest}, {human_size(total)} in all:")
    for filename, size in rows:
        say(f"  {human_size(size):>10}  {filename}")
    summary = {
        "python_version": args.python_version,
        "platforms": platforms,
        "requirements": resolved_roots,
        "left_to_host": {name: entry["reason"] for name, entry in selection.excluded.items()},
        "wheels": [{"file": filename, "size": size} for filename, size in rows],
        "total_size": total,
    }
    (dest / "gather.json").write_text(json.dumps(summary, indent=2) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- pack (here)


class PartWriter:
    """A write-only stream that cuts what it is given into numbered parts of at most N bytes."""

    def __init__(self, out_dir: Path, bundle_file: str, part_size: int) -> None:
        self.out_dir = out_dir
        self.bundle_file = bundle_file
        self.part_size = part_size
        self.parts: list[dict[str, Any]] = []
        self.whole = hashlib.sha256()
        self.total = 0
        self._handle: IO[bytes] | None = None
        self._digest = hashlib.sha256()
        self._written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._handle is None or self._written == self.part_size:
                self._next_part()
            take = min(len(view), self.part_size - self._written)
            chunk = view[:take]
            assert self._handle is not None
            self._handle.write(chunk)
            self._digest.update(chunk)
            self.whole.update(chunk)
            self._written += take
            self.total += take
            view = view[take:]
        return len(data)

    def _next_part(self) -> None:
        self._close_part()
        index = len(self.parts) + 1
        if index > 999:
            raise BundleError("more than 999 parts: use a larger --part-size", EXIT_USAGE)
        name = part_name(self.bundle_file, index)
        self.parts.append({"index": index, "name": name})
        self._handle = open(self.out_dir / name, "wb")  # noqa: SIM115 - closed in _close_part
        self._digest = hashlib.sha256()
        self._written = 0

    def _close_part(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        self.parts[-1].update(size=self._written, sha256=self._digest.hexdigest())
        say(
            f"  wrote {self.parts[-1]['name']} ({human_size(self._written)}, "
            f"{human_size(self.total)} so far)"
        )

    def close(self) -> None:
        self._close_part()

    def flush(self) -> None:
        """Nothing buffered here (tarfile calls it)."""


def part_name(bundle_file: str, index: int) -> str:
    """Deterministic part file name: ``<bundle file>.partNNN``, numbered from 1."""
    return f"{bundle_file}.part{index:03d}"


def manifest_name(bundle_name: str) -> str:
    return f"{bundle_name}.manifest.json"


def collect_files(includes: Sequence[str], root: Path) -> dict[str, Path]:
    """Archive name -> file for each included path (relative to ``root`` when inside it)."""
    files: dict[str, Path] = {}
    for include in includes:
        path = Path(include)
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise BundleError(f"--include path does not exist: {include}", EXIT_USAGE)
        path = path.resolve()
        try:
            base = path.relative_to(root.resolve())
        except ValueError:
            base = Path(path.name)
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            relative = candidate.relative_to(path)
            if any(part in JUNK_NAMES for part in relative.parts) or candidate.suffix == ".pyc":
                continue
            files[(base / relative).as_posix() if relative.parts else base.as_posix()] = candidate
    return files


def tracked_source_files(root: Path) -> list[str]:
    """Files git tracks in ``root`` that exist in the working tree."""
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=False
    )
    if result.returncode != 0:
        raise BundleError(f"git ls-files failed: {result.stderr.decode().strip()}", EXIT_TOOL)
    names = [name for name in result.stdout.decode().split("\0") if name]
    return [name for name in names if (root / name).is_file()]


def install_command(python: str = "python3") -> str:
    """The host-side install line stored in the manifest."""
    return f"{python} offline_host.py install --bundle BUNDLE_DIR --target BUNDLE_DIR/site"


def command_pack(args: argparse.Namespace) -> int:
    """Archive wheels + chosen folders and cut the archive into parts with a manifest."""
    wheels_dir = Path(args.wheels)
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels and not args.allow_no_wheels:
        raise BundleError(f"no wheels in {wheels_dir}: run gather first (or --allow-no-wheels)")
    duplicates = duplicate_wheels(wheels)
    if duplicates:
        raise BundleError(f"more than one version of a package in {wheels_dir}: {duplicates}")
    root = Path(args.root)
    members: dict[str, Path] = {}
    if args.with_source:
        members.update({name: root / name for name in tracked_source_files(root)})
    members.update(collect_files(args.include, root))
    members["offline_host.py"] = Path(__file__).resolve()
    members.update({f"wheels/{wheel.name}": wheel for wheel in wheels})
    gather_summary = wheels_dir / "gather.json"
    target = json.loads(gather_summary.read_text()) if gather_summary.is_file() else {}

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle_file = args.name + (".tar.gz" if args.compress == "gz" else ".tar")
    for stale in out_dir.glob(f"{bundle_file}.part*"):
        stale.unlink()
    content_size = sum(path.stat().st_size for path in members.values())
    say(
        f"packing {len(members)} files ({human_size(content_size)}) into {out_dir}/"
        f"{bundle_file}.partNNN, parts of at most {human_size(args.part_size)}"
    )
    writer = PartWriter(out_dir, bundle_file, args.part_size)
    mode = "w|gz" if args.compress == "gz" else "w|"
    with tarfile.open(
        fileobj=writer,
        mode=mode,
        format=tarfile.PAX_FORMAT,
        dereference=True,  # type: ignore[call-overload]
    ) as archive:
        for arcname in sorted(members):
            info = archive.gettarinfo(str(members[arcname]), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if os.access(members[arcname], os.X_OK) else 0o644
            with open(members[arcname], "rb") as handle:
                archive.addfile(info, handle)
    writer.close()

    manifest = {
        "format": MANIFEST_FORMAT,
        "bundle": args.name,
        "bundle_file": bundle_file,
        "compression": args.compress,
        "size": writer.total,
        "sha256": writer.whole.hexdigest(),
        "part_size": args.part_size,
        "parts": writer.parts,
        "python_version": target.get("python_version"),
        "platforms": target.get("platforms"),
        "wheels": [{"file": wheel.name, "size": wheel.stat().st_size} for wheel in wheels],
        "paths": sorted(
            {name.split("/", 1)[0] for name in members if not name.startswith("wheels/")}
        ),
        "left_to_host": target.get("left_to_host", {}),
        "install_command": install_command(),
        "pip_install_command": "python3 -m pip install --no-index --no-deps --find-links wheels"
        " --target site wheels/*.whl",
    }
    manifest_path = out_dir / manifest_name(args.name)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / f"{args.name}.SHA256SUMS").write_text(
        "".join(f"{part['sha256']}  {part['name']}\n" for part in writer.parts)
    )
    say(f"{len(writer.parts)} parts, {human_size(writer.total)} in all; manifest: {manifest_path}")
    return EXIT_OK


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link ``source`` to ``destination`` (no extra disk), copying where links fail."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def command_carry(args: argparse.Namespace) -> int:
    """Give each chosen part its own folder, ``INTO/partNNN/``, holding it and the manifest.

    One such folder is what one small transfer carries; staging them all ahead leaves nothing
    to do here between transfers.
    """
    manifest_path = find_manifest(Path(args.parts), args.manifest)
    manifest = load_manifest(manifest_path)
    parts = {part["index"]: part for part in manifest["parts"]}
    if args.which == "all":
        chosen = sorted(parts)
    elif args.which.isdigit() and int(args.which) in parts:
        chosen = [int(args.which)]
    else:
        raise BundleError(f"no part {args.which}: the bundle has parts 1..{len(parts)}", EXIT_USAGE)
    for index in chosen:
        folder = Path(args.into) / f"part{index:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        source = Path(args.parts) / parts[index]["name"]
        check_part(source, parts[index])
        link_or_copy(source, folder / source.name)
        shutil.copyfile(manifest_path, folder / manifest_path.name)
        say(
            f"{folder}/: {source.name} ({human_size(source.stat().st_size)}) + "
            f"{manifest_path.name} [part {index} of {len(parts)}]"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- host side


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


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offline_host.py",
        description=__doc__.split("\n\n", 1)[0],
        epilog="Exit codes: 0 ok, 1 integrity/bundle error, 2 usage, 3 tool failed, "
        "4 check failed.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    gather = commands.add_parser("gather", help="download wheels for the target (here)")
    gather.add_argument("requirement", nargs="*", help="extra requirements (pip syntax)")
    gather.add_argument(
        "-r",
        "--requirements-file",
        action="append",
        default=[],
        help="requirements file to add (repeatable)",
    )
    gather.add_argument(
        "--no-default-requirements",
        action="store_true",
        help="only what is named here, not the project's default list",
    )
    gather.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="package name pattern the host already has (repeatable)",
    )
    gather.add_argument(
        "--no-default-excludes",
        action="store_true",
        help=f"carry {', '.join(DEFAULT_EXCLUDES)} too",
    )
    gather.add_argument(
        "--host-packages",
        action="append",
        default=[],
        metavar="FILE",
        help="`pip freeze` of the host: those packages are not carried",
    )
    gather.add_argument(
        "--build-from-source",
        action="append",
        default=[],
        metavar="NAME",
        help="sdist-only package to build here into a pure-Python wheel",
    )
    gather.add_argument(
        "--no-default-builds",
        action="store_true",
        help=f"do not build {', '.join(DEFAULT_BUILD_FROM_SOURCE)} from source",
    )
    gather.add_argument("--python-version", default=DEFAULT_PYTHON_VERSION)
    gather.add_argument(
        "--glibc",
        default=DEFAULT_GLIBC,
        help="host's glibc: allows manylinux_2_X tags up to it (default %(default)s)",
    )
    gather.add_argument("--arch", default=DEFAULT_ARCH)
    gather.add_argument(
        "--platform",
        action="append",
        default=[],
        help="exact platform tag(s) instead of the --glibc range (repeatable)",
    )
    gather.add_argument("--dest", default=str(DEFAULT_WHEELS_DIR))
    gather.add_argument(
        "--project",
        default=str(PROJECT_ROOT),
        help="project to build a wheel of (default: this checkout)",
    )
    gather.add_argument("--no-project", action="store_true", help="no wheel of the project")
    gather.add_argument("--dry-run", action="store_true", help="resolve and list only")
    gather.set_defaults(handler=command_gather)

    pack = commands.add_parser("pack", help="archive wheels + folders into parts (here)")
    pack.add_argument("--wheels", default=str(DEFAULT_WHEELS_DIR))
    pack.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="file or folder to carry (relative to the project root; repeatable)",
    )
    pack.add_argument(
        "--with-source", action="store_true", help="carry the project's git-tracked files too"
    )
    pack.add_argument("--allow-no-wheels", action="store_true")
    pack.add_argument("--root", default=str(PROJECT_ROOT), help=argparse.SUPPRESS)
    pack.add_argument("--out", default=str(DEFAULT_BUNDLE_DIR))
    pack.add_argument("--name", default=DEFAULT_BUNDLE_NAME)
    pack.add_argument(
        "--part-size",
        type=parse_size,
        default=parse_size(DEFAULT_PART_SIZE),
        help="largest part, e.g. 55MiB (default), 500KiB, 1000",
    )
    pack.add_argument(
        "--compress",
        choices=("none", "gz"),
        default="none",
        help="gzip the archive (wheels are compressed already)",
    )
    pack.set_defaults(handler=command_pack)

    carry = commands.add_parser("carry", help="stage part N (or all) in INTO/partNNN/ (here)")
    carry.add_argument("which", metavar="N|all", help="part number, or all")
    carry.add_argument("--parts", default=str(DEFAULT_BUNDLE_DIR))
    carry.add_argument("--manifest")
    carry.add_argument("--into", default=str(DEFAULT_CARRY_DIR))
    carry.set_defaults(handler=command_carry)

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    if args.command in ("gather", "pack", "join", "unpack", "install"):
        say(f"({args.command} took {time.time() - started:.1f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
