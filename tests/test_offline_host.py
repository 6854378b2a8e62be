"""scripts/gpu_host/offline_host.py: host-side rebuild (join, append, verify, unpack), install and check.

Bundles are packed with offline_bundle.py through test_offline_bundle's helpers, so the round
trips here also check what pack writes against what the host side expects.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from test_offline_bundle import (
    BUNDLE_FILE,
    PART_SIZE,
    failing,
    load_script,
    make_project,
    pack,
    packed_bundle,
    sha256,
    tree,
)
from test_offline_bundle import tool as bundler

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_host" / "offline_host.py"


tool = load_script("offline_host")


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Path, Path, dict]:
    return packed_bundle(tmp_path)


def run_failing(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 1) -> str:
    """A host command that must fail with ``code``; its error output."""
    return failing(tool.main, argv, capsys, code)


# --------------------------------------------------------------------------- shared basics


@pytest.mark.parametrize(
    ("text", "size"),
    [("55MiB", 55 << 20), ("64KiB", 64 << 10), ("1000", 1000), ("2M", 2 << 20), ("1.5k", 1536)],
)
def test_parse_size(text: str, size: int) -> None:
    assert tool.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "-5", "0", "12 parsecs"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(Exception, match="size"):
        tool.parse_size(text)


# --------------------------------------------------------------------------- host: join, verify, unpack


def test_gzip_bundle_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_project(root)
    out, manifest = pack(root, "--compress", "gz")
    assert manifest["bundle_file"] == "maxwhisper-offline.tar.gz"
    assert tool.main(["join", str(out)]) == 0
    assert (
        tool.main(["unpack", str(out / manifest["bundle_file"]), "--into", str(tmp_path / "u")])
        == 0
    )
    assert (tmp_path / "u" / "weights" / "tiny.en" / "dims.json").read_text() == '{"n_mels": 80}\n'


def test_join_and_unpack_rebuild_the_packed_trees(packed, tmp_path: Path) -> None:
    root, out, manifest = packed
    assert tool.main(["verify", str(out)]) == 0
    assert tool.main(["join", str(out)]) == 0
    joined = out / BUNDLE_FILE
    assert sha256(joined.read_bytes()) == manifest["sha256"]
    assert tool.main(["verify", str(joined)]) == 0
    dest = tmp_path / "host" / "bundle"
    assert tool.main(["unpack", str(joined), "--into", str(dest)]) == 0
    assert tree(dest / "weights" / "tiny.en") == tree(root / "weights" / "tiny.en")
    assert not (dest / "weights" / "base.en").exists()
    expected_data = {k: v for k, v in tree(root / "data").items() if "__pycache__" not in k}
    assert tree(dest / "data") == expected_data
    assert tree(dest / "wheels") == tree(root / ".stage" / "wheels")
    assert (dest / "offline_host.py").read_bytes() == SCRIPT.read_bytes()


def test_join_names_a_missing_part(packed, capsys) -> None:
    _, out, manifest = packed
    (out / manifest["parts"][1]["name"]).unlink()
    error = run_failing(["join", str(out)], capsys)
    assert f"missing part 2: {BUNDLE_FILE}.part002 not found" in error
    assert not (out / BUNDLE_FILE).exists()


def test_join_names_a_corrupted_part(packed, capsys) -> None:
    _, out, manifest = packed
    third = out / manifest["parts"][2]["name"]
    data = bytearray(third.read_bytes())
    data[100] ^= 0xFF
    third.write_bytes(bytes(data))
    error = run_failing(["join", str(out)], capsys)
    assert f"part {BUNDLE_FILE}.part003: sha256 mismatch" in error
    assert "part001" not in error and "part002" not in error


def test_join_names_a_truncated_part(packed, capsys) -> None:
    _, out, manifest = packed
    first = out / manifest["parts"][0]["name"]
    first.write_bytes(first.read_bytes()[:1000])
    error = run_failing(["verify", str(out)], capsys)
    assert f"part {BUNDLE_FILE}.part001: 1000 bytes, the manifest says {PART_SIZE}" in error


def test_join_detects_parts_in_the_wrong_order(packed, capsys) -> None:
    _, out, manifest = packed
    first, second = (out / manifest["parts"][i]["name"] for i in (0, 1))
    swap = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(swap)
    error = run_failing(["join", str(out)], capsys)
    assert f"part {BUNDLE_FILE}.part001: sha256 mismatch" in error


def test_join_without_manifest_uses_part_numbers(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    (out / "maxwhisper-offline.manifest.json").unlink()
    output = tmp_path / "joined.tar"
    assert tool.main(["join", str(out), "--no-manifest", "--output", str(output)]) == 0
    assert sha256(output.read_bytes()) == manifest["sha256"]
    (out / manifest["parts"][3]["name"]).unlink()
    error = run_failing(["join", str(out), "--no-manifest"], capsys)
    assert f"missing part 4: {BUNDLE_FILE}.part004" in error


def test_verify_names_the_bad_or_missing_parts_of_a_joined_file(packed, capsys) -> None:
    _, out, manifest = packed
    assert tool.main(["join", str(out)]) == 0
    joined = out / BUNDLE_FILE
    data = bytearray(joined.read_bytes())
    data[PART_SIZE + 7] ^= 0x01  # inside part 2
    joined.write_bytes(bytes(data))
    error = run_failing(["verify", str(joined)], capsys)
    assert f"part {BUNDLE_FILE}.part002: sha256 mismatch" in error and "part001" not in error
    joined.write_bytes(bytes(data[: 3 * PART_SIZE]))
    error = run_failing(["verify", str(joined)], capsys)
    last = manifest["parts"][-1]["name"]
    assert f"incomplete: the file ends after {3 * PART_SIZE} of {manifest['size']} bytes" in error
    assert f"missing {BUNDLE_FILE}.part004 .. {last}" in error


def test_unpack_refuses_a_bundle_that_does_not_match(packed, tmp_path: Path, capsys) -> None:
    _, out, _ = packed
    assert tool.main(["join", str(out)]) == 0
    joined = out / BUNDLE_FILE
    joined.write_bytes(joined.read_bytes()[:-10])
    error = run_failing(["unpack", str(joined), "--into", str(tmp_path / "dest")], capsys)
    assert "does not match the manifest" in error and "cut short" in error
    assert not (tmp_path / "dest").exists()


def test_unpack_refuses_paths_outside_the_destination(tmp_path: Path, capsys) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as archive:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    error = run_failing(
        ["unpack", str(evil), "--into", str(tmp_path / "dest"), "--no-verify"], capsys
    )
    assert "unsafe path in archive: ../escaped.txt" in error
    assert not (tmp_path / "escaped.txt").exists()


# --------------------------------------------------------------------------- host: append


def carry_parts(out: Path, manifest: dict, transfers: Path) -> list[Path]:
    """Each part in its own folder with the manifest, as one small transfer would bring it."""
    assert bundler.main(["carry", "all", "--parts", str(out), "--into", str(transfers)]) == 0
    carried = []
    for part in manifest["parts"]:
        folder = transfers / f"part{part['index']:03d}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [part["name"], "maxwhisper-offline.manifest.json"]
        )
        carried.append(folder / part["name"])
    return carried


def test_append_one_part_per_transfer_rebuilds_the_bundle(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    carried = carry_parts(out, manifest, tmp_path / "transfers")
    growing = tmp_path / "root" / BUNDLE_FILE
    for number, part in enumerate(carried, 1):
        assert tool.main(["append", str(part), "--into", str(growing)]) == 0
        assert growing.stat().st_size == sum(p["size"] for p in manifest["parts"][:number])
        if number == 2:
            assert "appended" in capsys.readouterr().out
            assert tool.main(["append", str(part), "--into", str(growing)]) == 0  # re-sent: no-op
            assert "already appended" in capsys.readouterr().out
            assert growing.stat().st_size == 2 * PART_SIZE
    assert "complete" in capsys.readouterr().out
    assert sha256(growing.read_bytes()) == manifest["sha256"]
    manifest_path = str(out / "maxwhisper-offline.manifest.json")
    unpacked = tmp_path / "b"
    assert (
        tool.main(["unpack", str(growing), "--into", str(unpacked), "--manifest", manifest_path])
        == 0
    )
    assert (unpacked / "data" / "manifest.csv").is_file()


def test_append_refuses_the_wrong_order(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    growing = tmp_path / BUNDLE_FILE
    error = run_failing(["append", str(out / manifest["parts"][1]["name"]), "--into", str(growing)],
                        capsys)  # fmt: skip
    assert f"wrong order: {BUNDLE_FILE} holds 0 part(s); expected {BUNDLE_FILE}.part001" in error
    assert f"got {BUNDLE_FILE}.part002" in error
    assert not growing.exists()


def test_append_refuses_a_corrupted_part_before_writing(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    carried = carry_parts(out, manifest, tmp_path / "transfers")
    growing = tmp_path / BUNDLE_FILE
    assert tool.main(["append", str(carried[0]), "--into", str(growing)]) == 0
    data = bytearray(carried[1].read_bytes())
    data[-1] ^= 0xFF
    carried[1].write_bytes(bytes(data))
    error = run_failing(["append", str(carried[1]), "--into", str(growing)], capsys)
    assert f"part {BUNDLE_FILE}.part002: sha256 mismatch" in error
    assert growing.stat().st_size == PART_SIZE


def test_append_without_manifest_still_checks_order_and_repeats(
    packed, tmp_path: Path, capsys
) -> None:
    _, out, manifest = packed
    (out / "maxwhisper-offline.manifest.json").unlink()
    growing = tmp_path / BUNDLE_FILE
    first, second, third = (out / manifest["parts"][i]["name"] for i in range(3))
    assert tool.main(["append", str(first), "--into", str(growing)]) == 0
    error = run_failing(["append", str(third), "--into", str(growing)], capsys)
    assert f"expected {BUNDLE_FILE}.part002, got {BUNDLE_FILE}.part003" in error
    second_copy = tmp_path / "elsewhere" / second.name
    second_copy.parent.mkdir()
    second_copy.write_bytes(b"x" * PART_SIZE)
    assert tool.main(["append", str(second), "--into", str(growing)]) == 0
    error = run_failing(["append", str(second_copy), "--into", str(growing)], capsys)
    assert "differs from the part 2 already appended" in error


def test_append_discards_the_tail_of_an_interrupted_append(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    growing = tmp_path / BUNDLE_FILE
    first, second = (out / manifest["parts"][i]["name"] for i in range(2))
    assert tool.main(["append", str(first), "--into", str(growing)]) == 0
    with open(growing, "ab") as handle:
        handle.write(second.read_bytes()[:1234])  # a copy that died half-way
    capsys.readouterr()
    assert tool.main(["append", str(second), "--into", str(growing)]) == 0
    assert "discarding 1234 bytes" in capsys.readouterr().out
    assert growing.read_bytes() == first.read_bytes() + second.read_bytes()


def test_append_refuses_a_file_it_did_not_start(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    growing = tmp_path / BUNDLE_FILE
    growing.write_bytes(b"something else")
    error = run_failing(["append", str(out / manifest["parts"][0]["name"]), "--into", str(growing)],
                        capsys)  # fmt: skip
    assert "was not built by append" in error


# --------------------------------------------------------------------------- host: install, check


def make_wheel(folder: Path, name: str, version: str, data: dict[str, str] | None = None) -> Path:
    """A real, installable pure-Python wheel holding module ``name`` (and ``data`` files, by
    their path under the install prefix)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        **{f"{name}-{version}.data/data/{path}": text for path, text in (data or {}).items()},
        f"{name}/__init__.py": f'__version__ = "{version}"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_install_puts_wheels_in_a_site_folder_and_check_imports_them(
    tmp_path: Path, capsys
) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    make_wheel(bundle / "wheels", "offline_demo_pkg", "1.2.3")
    assert tool.main(["install", "--bundle", str(bundle)]) == 0
    site = bundle / "site"
    assert (site / "offline_demo_pkg" / "__init__.py").is_file()
    env_line = f"export PYTHONPATH={site}${{PYTHONPATH:+:$PYTHONPATH}}"
    assert env_line in (bundle / "env.sh").read_text()
    assert env_line in capsys.readouterr().out

    environment = {**os.environ, "PYTHONPATH": str(site)}
    good = subprocess.run([sys.executable, str(SCRIPT), "check", "--module", "offline_demo_pkg"],
                          capture_output=True, text=True, env=environment, check=False)  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok   offline_demo_pkg 1.2.3" in good.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "check", "--module", "offline_demo_pkg",
                          "--module", "no_such_module_xyz"],
                         capture_output=True, text=True, env=environment, check=False)  # fmt: skip
    assert bad.returncode == tool.EXIT_CHECK
    assert "FAIL no_such_module_xyz: ModuleNotFoundError" in bad.stdout
    assert "JUPYTER_PATH" not in (bundle / "env.sh").read_text()  # no Jupyter data: not set


def test_install_exports_the_jupyter_data_folder_its_wheels_bring(tmp_path: Path) -> None:
    # nbconvert's templates land in site/share/jupyter with --target; Jupyter looks there only
    # when JUPYTER_PATH says so (on the H200 host, rendering the reports failed without it)
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    template = {"share/jupyter/nbconvert/templates/demo/conf.json": "{}"}
    make_wheel(bundle / "wheels", "offline_demo_templates", "0.1", data=template)
    assert tool.main(["install", "--bundle", str(bundle)]) == 0
    jupyter = bundle / "site" / "share" / "jupyter"
    assert (jupyter / "nbconvert" / "templates" / "demo" / "conf.json").is_file()
    env = (bundle / "env.sh").read_text()
    assert f"export JUPYTER_PATH={jupyter}${{JUPYTER_PATH:+:$JUPYTER_PATH}}" in env


def test_install_refuses_two_versions_of_a_package(tmp_path: Path, capsys) -> None:
    (tmp_path / "wheels").mkdir()
    make_wheel(tmp_path / "wheels", "dup", "1.0")
    make_wheel(tmp_path / "wheels", "dup", "2.0")
    error = run_failing(["install", "--bundle", str(tmp_path)], capsys)
    assert "more than one version" in error and "dup-1.0" in error and "dup-2.0" in error


def test_a_failing_pip_install_exits_with_the_tool_code(tmp_path: Path, capsys) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip file")
    error = run_failing(["install", "--bundle", str(tmp_path)], capsys, code=tool.EXIT_TOOL)
    assert "pip install failed" in error


# --------------------------------------------------------------------------- host constraints


def test_host_side_needs_only_the_standard_library_and_python_3_8() -> None:
    source = SCRIPT.read_text()
    module = ast.parse(source, feature_version=(3, 8))  # syntax newer than 3.8 fails here
    top_level_imports = set()
    for node in module.body:
        if isinstance(node, ast.Import):
            top_level_imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level_imports.add(node.module.split(".")[0])
    assert top_level_imports - {"__future__"} <= sys.stdlib_module_names
    for name in ("removeprefix", "removesuffix", "is_relative_to", "file_digest", "strict="):
        assert name not in source, f"{name} is newer than Python 3.8"


def test_host_script_imports_only_the_standard_library_anywhere() -> None:
    module = ast.parse(SCRIPT.read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(module):  # top level and inside functions alike
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, "no relative imports: the file travels alone"
            imported.add(node.module.split(".")[0])
    # `check` probes max itself (inside a try): the one import that is not the standard library
    assert imported - {"__future__", "max"} <= sys.stdlib_module_names
    assert {"importlib", "argparse", "tarfile"} <= imported


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        tool.main([])
    assert raised.value.code == tool.EXIT_USAGE
    with pytest.raises(SystemExit) as raised:
        tool.main(["join"])
    assert raised.value.code == tool.EXIT_USAGE


def test_the_host_script_offers_only_the_host_commands() -> None:
    parser = tool.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert sorted(commands.choices) == ["append", "check", "install", "join", "unpack", "verify"]
    with pytest.raises(SystemExit) as raised:
        tool.main(["pack", "--part-size", "lots"])  # packing is offline_bundle.py's
    assert raised.value.code == tool.EXIT_USAGE


def test_check_names_the_accelerator_architecture_to_precompile_for():
    """On a GPU host ``check`` names the GPU's architecture as MAX does (the precompiled
    models' key); shown here with MAX's virtual H100/H200 (no GPU needed, nothing compiled)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from max import driver; "
        "driver.set_virtual_device_api('cuda'); driver.set_virtual_device_target_arch('sm_90a'); "
        "driver.set_virtual_device_count(1); import offline_host; "
        "print(offline_host.max_accelerator_count(), offline_host.max_accelerator_architecture())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "cuda:sm_90a"]
