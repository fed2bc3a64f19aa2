"""Bad and cut files say what is wrong in our words: PCD files cut short or without a
header, multi-value PCD fields, KITTI scans that are not float32 metres, rosbag2 MCAP bags
cut short or compressed message by message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm.formats import DamagedFileError, FormatError, iter_clouds, read_points
from tests.formats.bags import write_rosbag2_mcap

LIBRARY_WORDS = ("buffer size", "error in compressed data", "usecols", "validation", "pydantic",
                 "__0000", "UnicodeDecodeError", "AnyReaderError")


def scan(n: int = 50, seed: int = 0) -> np.ndarray:
    """(n, 4) float32 x, y, z, intensity, no zero or NaN row."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(scale=3.0, size=(n, 3)) + 10.0
    return np.c_[xyz, np.arange(n)].astype(np.float32)


def says(exc: pytest.ExceptionInfo, *words: str) -> str:
    message = str(exc.value)
    for word in words:
        assert word in message, message
    assert "\n" not in message and not any(w in message for w in LIBRARY_WORDS), message
    return message


def write_pcd(path: Path, data: np.ndarray, encoding: str) -> bytes:
    from pypcd4 import Encoding, PointCloud

    PointCloud.from_xyzi_points(data).save(path, encoding=Encoding(encoding))
    return path.read_bytes()


@pytest.mark.parametrize("encoding", ["binary", "ascii"])
def test_pcd_cut_short_yields_the_rows_before_the_cut(tmp_path: Path, encoding: str) -> None:
    data = scan()
    whole = write_pcd(tmp_path / "whole.pcd", data, encoding)
    header = whole.index(b"DATA") + whole[whole.index(b"DATA"):].index(b"\n") + 1
    rows = 30 if encoding == "binary" else 29  # ascii: the 30th row is cut in two
    cut = header + 30 * 16 if encoding == "binary" else header + len(
        b"".join(whole[header:].split(b"\n")[:29])) + 29 + 7
    (tmp_path / "cut.pcd").write_bytes(whole[:cut])
    clouds = []
    with pytest.raises(DamagedFileError) as info:
        clouds.extend(iter_clouds(tmp_path / "cut.pcd"))
    says(info, f"cut.pcd: cut short: the header says 50 points, the file holds {rows}")
    assert info.value.messages_read == 1 and len(clouds) == 1
    np.testing.assert_allclose(clouds[0].points, data[:rows, :3], rtol=1e-6)
    got = read_points(tmp_path / "cut.pcd", allow_damaged=True, fields=["intensity"])
    np.testing.assert_array_equal(got[:, 0], np.arange(rows))


def test_pcd_header_promising_more_points_than_the_file_holds(tmp_path: Path) -> None:
    text = write_pcd(tmp_path / "whole.pcd", scan(), "ascii").replace(b"POINTS 50", b"POINTS 70")
    (tmp_path / "more.pcd").write_bytes(text)
    with pytest.raises(DamagedFileError) as info:
        read_points(tmp_path / "more.pcd")
    says(info, "more.pcd: cut short: the header says 70 points, the file holds 50")
    assert len(read_points(tmp_path / "more.pcd", allow_damaged=True)) == 50


def test_pcd_binary_compressed_cut_short_reads_nothing(tmp_path: Path) -> None:
    # pypcd4 stores data that LZF cannot shrink as binary: repeated rows shrink
    whole = write_pcd(tmp_path / "whole.pcd", np.tile(scan(5), (10, 1)), "binary_compressed")
    assert b"DATA binary_compressed" in whole
    (tmp_path / "cut.pcd").write_bytes(whole[: len(whole) - 40])
    with pytest.raises(DamagedFileError) as info:
        list(iter_clouds(tmp_path / "cut.pcd"))
    says(info, "cut.pcd: cut short: the header says 50 points", "no point can be read")
    assert info.value.messages_read == 0


@pytest.mark.parametrize("content", [b"", b"hello world\nthis is not a pcd\n",
                                     b"\x00\xff\xfe binary junk"])
def test_pcd_without_a_header(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.pcd").write_bytes(content)
    with pytest.raises(FormatError) as info:
        read_points(tmp_path / "x.pcd")
    says(info, "x.pcd: not a PCD file (no valid header)")
    (tmp_path / "half.pcd").write_text("VERSION 0.7\nFIELDS x y z\nDATA ascii\n1 2 3\n")
    with pytest.raises(FormatError) as info:
        read_points(tmp_path / "half.pcd")
    says(info, "half.pcd: not a PCD file (its header lacks or garbles", "SIZE", "POINTS")


def test_pcd_field_of_count_3_is_named_by_element(tmp_path: Path) -> None:
    rows = "\n".join(f"{i} {i + 1} {i + 2} 0.5 0.25 0.125 9" for i in range(1, 6))
    (tmp_path / "n.pcd").write_text(
        "VERSION 0.7\nFIELDS x y z n _\nSIZE 4 4 4 4 4\nTYPE F F F F F\nCOUNT 1 1 1 3 1\n"
        f"WIDTH 5\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 5\nDATA ascii\n{rows}\n")
    with pytest.raises(FormatError) as info:
        read_points(tmp_path / "n.pcd", fields=["q"])
    says(info, "no field 'q' (its fields: x,y,z,n[0],n[1],n[2])")  # no "_" padding field
    np.testing.assert_array_equal(read_points(tmp_path / "n.pcd", fields=["n"]),
                                  [[0.5, 0.25, 0.125]] * 5)
    np.testing.assert_array_equal(read_points(tmp_path / "n.pcd", fields=["n[2]", "x"]),
                                  np.c_[[0.125] * 5, np.arange(1, 6)])


def test_kitti_bin_of_float64_data_and_an_empty_one_are_refused(tmp_path: Path) -> None:
    data = scan(200)
    data.astype(np.float64).tofile(tmp_path / "f64.bin")  # a whole number of 16-byte records
    with pytest.raises(FormatError) as info:
        read_points(tmp_path / "f64.bin")
    says(info, "f64.bin: ", "not a KITTI scan of float32 x, y, z, reflectance")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(FormatError) as info:
        read_points(tmp_path / "empty.bin")
    assert "empty" in says(info, "empty.bin: ") and "whole number" not in str(info.value)
    stray = data.copy()
    stray[0, 0] = 3e19  # one wild point in a real scan is left to the range limits
    stray.tofile(tmp_path / "stray.bin")
    assert len(read_points(tmp_path / "stray.bin")) == 200


def test_rosbag2_mcap_directory_cut_short_is_read_to_the_cut(tmp_path: Path) -> None:
    # rosbags closes an MCAP chunk past 1 MiB: 800 kB clouds make a chunk of the first two.
    clouds = [scan(40_000, seed)[:, :3].copy() for seed in range(3)]
    mcap = write_rosbag2_mcap(tmp_path / "bag", clouds, stamps=[1.0, 1.1, 1.2])
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.8)])  # the power cut
    for path in (tmp_path / "bag", mcap):
        got = []
        with pytest.raises(DamagedFileError) as info:
            got.extend(iter_clouds(path))
        says(info, "cut short", "read 2 messages of /points")
        assert info.value.messages_read == 2
        for cloud, points in zip(got, clouds):
            np.testing.assert_array_equal(cloud.points, points)


def test_bare_mcap_compressed_message_by_message(tmp_path: Path) -> None:
    clouds = [scan(30, seed)[:, :3].copy() for seed in range(3)]
    mcap = write_rosbag2_mcap(tmp_path / "bag", clouds, stamps=[1.0, 1.1, 1.2],
                              per_message_zstd=True)
    assert mcap.read_bytes().count(b"\x28\xb5\x2f\xfd") >= 3  # zstd frames, one a message
    for path in (mcap, tmp_path / "bag"):
        got = list(iter_clouds(path))
        assert [c.stamp for c in got] == pytest.approx([1.0, 1.1, 1.2])
        for cloud, points in zip(got, clouds):
            np.testing.assert_array_equal(cloud.points, points)


def test_fit_warns_about_a_cut_pcd_and_fits_what_it_holds(tmp_path: Path, capsys) -> None:
    from streamgmm.cli import main

    whole = write_pcd(tmp_path / "whole.pcd", scan(), "binary")
    (tmp_path / "cut.pcd").write_bytes(whole[: len(whole) - 20 * 16 - 5])
    assert main(["fit", "--components", "1", str(tmp_path / "cut.pcd")]) == 0
    captured = capsys.readouterr()
    assert ("streamgmm fit: warning: " in captured.err
            and "cut.pcd: cut short: the header says 50 points, the file holds 29" in captured.err)
    assert "29 points" in captured.out
