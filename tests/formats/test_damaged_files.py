"""Bad and cut files say what is wrong in our words, and what they hold before the damage is
read: PCD, PLY and KITTI files cut short, PCD files without a header, multi-value PCD fields,
KITTI scans that are not float32 metres, rosbag2 bags cut short, compressed message by
message, or without their metadata.yaml."""

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


def test_rosbag2_directories_without_metadata_yaml_are_read_from_their_files(
        tmp_path: Path) -> None:
    # rosbag2 writes metadata.yaml when the recorder closes the bag: a recorder killed, or a
    # robot losing power, leaves the storage files alone.
    from tests.formats.bags import write_rosbags

    clouds = [scan(30, seed)[:, :3].copy() for seed in range(3)]
    write_rosbag2_mcap(tmp_path / "m", clouds, stamps=[1.0, 1.1, 1.2])
    write_rosbags(tmp_path / "s", clouds, stamps=[1.0, 1.1, 1.2])
    for bag in (tmp_path / "m", tmp_path / "s"):
        (bag / "metadata.yaml").unlink()
        for path in (bag, *bag.glob("*.db3")):
            got = list(iter_clouds(path))
            assert [c.stamp for c in got] == pytest.approx([1.0, 1.1, 1.2]), path
            assert [c.time for c in got] == pytest.approx([1.7e9, 1.7e9 + 0.1, 1.7e9 + 0.2])
            for cloud, points in zip(got, clouds):
                np.testing.assert_array_equal(cloud.points, points)
            with pytest.raises(FormatError) as info:
                list(iter_clouds(path, topic="/nothing"))
            says(info, "no topic '/nothing' (readable topics: /points")


def test_rosbag2_split_across_files_without_metadata_reads_them_in_order(
        tmp_path: Path) -> None:
    from tests.formats.bags import write_rosbags

    clouds = [scan(20, seed)[:, :3].copy() for seed in range(12)]
    for part in range(12):  # rosbag2's split files: NAME_0, NAME_1, ... NAME_11
        one = write_rosbags(tmp_path / f"p{part}", [clouds[part]], stamps=[float(part + 1)])
        one.rename(tmp_path / f"run_{part}.db3")
    files = sorted(tmp_path.glob("*.db3"))
    assert files[2].name == "run_10.db3"  # by name, 10 comes before 2
    got = list(iter_clouds(tmp_path))
    assert [c.stamp for c in got] == pytest.approx([float(i + 1) for i in range(12)])
    np.testing.assert_array_equal(np.concatenate([c.points for c in got]),
                                  np.concatenate(clouds))


def test_a_directory_that_is_no_bag_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError) as info:
        read_points(tmp_path)
    says(info, "a directory, not a point file or a rosbag2 bag", "no metadata.yaml")
    (tmp_path / "x.db3").write_bytes(b"not sqlite at all, just some bytes" * 40)
    with pytest.raises(FormatError) as info:
        read_points(tmp_path)
    says(info, "x.db3")


@pytest.mark.parametrize("metadata", [True, False])
def test_rosbag2_sqlite_bag_cut_short_is_read_to_the_cut(tmp_path: Path, metadata: bool) -> None:
    from tests.formats.bags import write_rosbags

    clouds = [scan(3_000, seed)[:, :3].copy() for seed in range(20)]
    db3 = write_rosbags(tmp_path / "bag", clouds, stamps=[1.0 + i for i in range(20)])
    if not metadata:
        (tmp_path / "bag" / "metadata.yaml").unlink()
    db3.write_bytes(db3.read_bytes()[: int(db3.stat().st_size * 0.6)])  # the power cut
    got = []
    with pytest.raises(DamagedFileError) as info:
        got.extend(iter_clouds(tmp_path / "bag"))
    says(info, "bag: damaged after", "messages of /points", "malformed")
    assert 5 <= len(got) == info.value.messages_read < 20
    for cloud, points in zip(got, clouds):
        np.testing.assert_array_equal(cloud.points, points)
    assert len(read_points(tmp_path / "bag", allow_damaged=True)) == 3_000 * len(got)


def write_ply(path: Path, data: np.ndarray, text: bool, byte_order: str = "<",
              faces: int = 0) -> bytes:
    from plyfile import PlyData, PlyElement

    vertex = np.zeros(len(data), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"),
                                        ("intensity", "f8")])
    for j, name in enumerate(("x", "y", "z", "intensity")):
        vertex[name] = data[:, j]
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces:
        face = np.zeros(faces, dtype=[("vertex_indices", "O")])
        face["vertex_indices"] = [np.array([0, 1, 2], dtype="i4")] * faces
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements, text=text, byte_order=byte_order).write(str(path))
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["ascii", "binary", "big-endian"])
def test_ply_cut_short_yields_the_vertices_before_the_cut(tmp_path: Path, kind: str) -> None:
    data = scan()
    whole = write_ply(tmp_path / "whole.ply", data, kind == "ascii",
                      ">" if kind == "big-endian" else "<")
    start = whole.index(b"end_header\n") + len(b"end_header\n")
    if kind == "ascii":  # 30 whole lines and a piece of the 31st
        cut = start + sum(len(line) + 1 for line in whole[start:].split(b"\n")[:30]) + 5
    else:
        cut = start + 30 * 20 + 7  # 20 bytes a vertex
    (tmp_path / "cut.ply").write_bytes(whole[:cut])
    clouds = []
    with pytest.raises(DamagedFileError) as info:
        clouds.extend(iter_clouds(tmp_path / "cut.ply"))
    says(info, "cut.ply: cut short: the header says 50 vertices, the file holds 30; read "
         "those 30")
    assert info.value.messages_read == 1 and info.value.where == "after vertex 30 of 50"
    np.testing.assert_allclose(clouds[0].points, data[:30, :3], rtol=1e-6)
    got = read_points(tmp_path / "cut.ply", allow_damaged=True, fields=["intensity"])
    np.testing.assert_array_equal(got[:, 0], np.arange(30))


def test_ply_damaged_after_its_vertices_yields_them_all(tmp_path: Path) -> None:
    data = scan()
    whole = write_ply(tmp_path / "mesh.ply", data, text=False, faces=40)
    assert len(read_points(tmp_path / "mesh.ply")) == 50
    (tmp_path / "cut.ply").write_bytes(whole[:-30])  # the faces cut short
    with pytest.raises(DamagedFileError) as info:
        read_points(tmp_path / "cut.ply")
    says(info, "cut.ply: damaged after its 50 vertices", "read the 50 vertices")
    np.testing.assert_allclose(read_points(tmp_path / "cut.ply", allow_damaged=True),
                               data[:, :3], rtol=1e-6)
    (tmp_path / "crumb.ply").write_bytes(whole[: whole.index(b"end_header") + 11 + 9])
    with pytest.raises(DamagedFileError) as info:
        read_points(tmp_path / "crumb.ply", allow_damaged=True)
    says(info, "the file holds none; no point can be read")


def test_fit_reads_a_bag_directory_without_metadata_not_as_shards(tmp_path: Path,
                                                                  capsys) -> None:
    from streamgmm.cli import main

    clouds = [scan(30, seed)[:, :3].copy() for seed in range(3)]
    write_rosbag2_mcap(tmp_path / "bag", clouds, stamps=[1.0, 1.1, 1.2])
    (tmp_path / "bag" / "metadata.yaml").unlink()
    assert main(["fit", "--components", "1", str(tmp_path / "bag")]) == 0
    assert "90 points" in capsys.readouterr().out


def test_ascii_ply_cut_short_with_a_blank_line_in_its_data(tmp_path: Path) -> None:
    data = scan()
    whole = write_ply(tmp_path / "whole.ply", data, text=True)
    start = whole.index(b"end_header\n") + len(b"end_header\n")
    lines = whole[start:].split(b"\n")
    body = b"\n".join(lines[:3] + [b""] + lines[3:30]) + b"\n" + lines[30][:5]  # cut in 31
    (tmp_path / "cut.ply").write_bytes(whole[:start] + body)
    got = read_points(tmp_path / "cut.ply", allow_damaged=True, fields=["intensity"])
    np.testing.assert_array_equal(got[:, 0], np.arange(30))
