"""The metadata footer DuckDB reads from the last 512 bytes of the extension file."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("append_footer", ROOT / "tools/append_footer.py")
append_footer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(append_footer)


def test_built_extension_has_the_expected_footer(ext):
    data = pathlib.Path(ext).read_bytes()
    assert data[-534:-512] == bytes([0x00, 0x93, 0x04, 0x10]) + b"duckdb_signature" + bytes([0x80, 0x04])
    fields = append_footer.parse(data)
    assert fields["magic"] == "4"
    assert fields["platform"] == "linux_amd64"
    assert fields["capi_version"] == "v1.5.6"
    assert fields["abi"] == "C_STRUCT"
    assert fields["extension_version"].startswith("v")
    assert data[-256:] == bytes(256)


def test_footer_round_trip_and_field_limits(tmp_path):
    src = tmp_path / "lib.so"
    src.write_bytes(b"\x7fELF" + bytes(100))
    out = tmp_path / "x.duckdb_extension"
    assert append_footer.main([str(src), str(out), "--platform", "osx_arm64", "--extension-version", "v9.9.9"]) == 0
    data = out.read_bytes()
    assert len(data) == 104 + 534
    assert data[:104] == src.read_bytes()
    f = append_footer.parse(data)
    assert (f["platform"], f["extension_version"], f["unused1"]) == ("osx_arm64", "v9.9.9", "")
    try:
        append_footer.footer("C_STRUCT", "v" + "1" * 40, "v1.5.6", "linux_amd64")
    except ValueError as e:
        assert "longer than 31" in str(e)
    else:
        raise AssertionError("an over-long field must be refused")
