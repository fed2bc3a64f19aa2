"""Point files written by the libraries that own them (pypcd4, plyfile, laspy, numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm.formats import FORMATS, DamagedFileError, FormatError, iter_clouds, read_points


def points(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=3.0, size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_every_encoding(tmp_path: Path, encoding: str) -> None:
    from pypcd4 import Encoding, PointCloud

    xyz = points()
    xyzi = np.c_[xyz, np.arange(len(xyz), dtype=np.float32)]
    xyzi[7, 1] = np.nan  # an organised cloud's missing return
    path = tmp_path / f"scan_{encoding}.pcd"
    PointCloud.from_xyzi_points(xyzi).save(path, encoding=Encoding(encoding))
    got = read_points(path)  # without the NaN row
    assert got.dtype == np.float32
    keep = np.arange(50) != 7
    np.testing.assert_allclose(got, xyzi[keep, :3], rtol=1e-6 if encoding == "ascii" else 0)
    (cloud,) = iter_clouds(path, fields=["intensity", "y"])
    assert cloud.dropped == 1 and cloud.stamp is None
    np.testing.assert_allclose(cloud.points, xyzi[keep][:, [3, 1]], rtol=1e-6)


@pytest.mark.parametrize("text", [True, False])
def test_ply_ascii_and_binary(tmp_path: Path, text: bool) -> None:
    from plyfile import PlyData, PlyElement

    xyz = points().astype(np.float64)
    vertex = np.zeros(len(xyz), dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("red", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    vertex["red"] = 200
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(tmp_path / "m.ply"))
    got = read_points(tmp_path / "m.ply")
    np.testing.assert_allclose(got, xyz, rtol=1e-12 if text else 0)
    np.testing.assert_array_equal(read_points(tmp_path / "m.ply", fields=["red"]), 200)


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_and_laz(tmp_path: Path, suffix: str) -> None:
    import laspy

    xyz = np.round(points().astype(np.float64), 3)
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([0.0, 0.0, 0.0])
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz.T
    las.intensity = np.arange(len(xyz), dtype=np.uint16)
    las.write(str(tmp_path / f"survey{suffix}"))
    got = read_points(tmp_path / f"survey{suffix}")
    np.testing.assert_allclose(got, xyz, atol=5e-4)
    np.testing.assert_array_equal(
        read_points(tmp_path / f"survey{suffix}", fields=["intensity"])[:, 0], np.arange(50)
    )


def test_kitti_bin(tmp_path: Path) -> None:
    scan = np.c_[points(), np.linspace(0, 1, 50, dtype=np.float32)]
    scan.tofile(tmp_path / "000000.bin")
    np.testing.assert_array_equal(read_points(tmp_path / "000000.bin"), scan[:, :3])
    np.testing.assert_array_equal(
        read_points(tmp_path / "000000.bin", fields=["intensity"])[:, 0], scan[:, 3]
    )
    (tmp_path / "cut.bin").write_bytes(scan.tobytes()[:-5])  # the last point cut in two
    with pytest.raises(DamagedFileError, match="cut short: its 795 bytes hold 49 whole KITTI "
                       "points .* and 11 bytes of the next; read those 49"):
        read_points(tmp_path / "cut.bin")
    np.testing.assert_array_equal(read_points(tmp_path / "cut.bin", allow_damaged=True),
                                  scan[:49, :3])
    (tmp_path / "crumb.bin").write_bytes(scan.tobytes()[:7])
    with pytest.raises(DamagedFileError, match="0 whole KITTI points .* no point can be read"):
        read_points(tmp_path / "crumb.bin", allow_damaged=True)


def _bad_files(tmp: Path) -> dict[str, str]:
    """name -> what the error must say; written with the owning libraries, then damaged."""
    from plyfile import PlyData, PlyElement
    from pypcd4 import Encoding, PointCloud

    # Cut short, binary_compressed: one compressed block, so no row before the cut is readable
    # (a cut binary or ascii PCD is read up to the cut; test_damaged_files). Repeated rows,
    # as pypcd4 stores data that LZF cannot shrink as binary.
    PointCloud.from_xyz_points(np.tile(points(5), (10, 1))).save(
        tmp / "good.pcd", encoding=Encoding.BINARY_COMPRESSED)
    data = (tmp / "good.pcd").read_bytes()
    (tmp / "cut.pcd").write_bytes(data[: len(data) - 40])
    PointCloud.from_points([np.arange(5.0), np.arange(5.0)], ("a", "b"), (np.float32,) * 2) \
        .save(tmp / "noxyz.pcd")
    faces = np.zeros(2, dtype=[("vertex_indices", "O")])
    PlyData([PlyElement.describe(faces, "face")], text=True).write(str(tmp / "nov.ply"))
    listy = np.zeros(3, dtype=[("x", "O"), ("y", "f4"), ("z", "f4")])
    listy["x"] = [np.array([1, 2], dtype="i4")] * 3
    PlyData([PlyElement.describe(listy, "vertex", val_types={"x": "i4"}, len_types={"x": "u1"})],
            text=True).write(str(tmp / "listx.ply"))
    (tmp / "junk.las").write_bytes(b"LASF" + b"\x00" * 40)
    (tmp / "object.npy").write_bytes(b"")
    np.save(tmp / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp / "garbage.npy").write_bytes(b"\x93NUMPY garbage garbage")
    (tmp / "ragged.csv").write_text("x,y,z\n1,2,3\n4,5\n")
    (tmp / "words.csv").write_text("1,2,3\n4,five,6\n")
    return {
        "cut.pcd": "cut.pcd: cut short: the header says 50 points",
        "noxyz.pcd": "no field 'x' (its fields: a,b)",
        "nov.ply": "no vertex element (it has: face)",
        "listx.ply": "field 'x' is not one number per point",
        "junk.las": "junk.las: not a readable LAS/LAZ file",
        "object.npy": "object.npy: the .npy file is empty or truncated",
        "pickled.npy": "holds Python objects, not a numeric array",
        "garbage.npy": "garbage.npy: not a readable .npy array",
        "ragged.csv": "line 3 has 2 columns, the lines before it 3",
        "words.csv": "line 2: 'five' is not a number",
        "scan.xyz": "expected a .npy or .csv file, a point cloud",
    }


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    for name, says in _bad_files(tmp_path).items():
        with pytest.raises(FormatError) as info:
            read_points(tmp_path / name)
        message = str(info.value)
        assert says in message, (name, message)
        assert "allow_pickle" not in message and "usecols" not in message
        assert "\n" not in message


def test_fields_on_a_table_and_topic_on_a_file_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", points())
    with pytest.raises(FormatError, match="has no field names"):
        read_points(tmp_path / "x.npy", fields=["x"])
    with pytest.raises(FormatError, match="a topic only applies to ROS bags"):
        list(iter_clouds(tmp_path / "x.npy", topic="/points"))


def test_one_table_names_every_extension() -> None:
    assert set(FORMATS) == {".npy", ".csv", ".bin", ".pcd", ".ply", ".las", ".laz", ".mcap",
                            ".db3", ".bag", ".parquet"}
    assert {f.extra for f in FORMATS.values()} == {None, "pointclouds", "ros", "dask"}


def test_optional_packages_stay_unimported() -> None:
    import subprocess
    import sys

    code = ("import sys, streamgmm, streamgmm.formats, streamgmm.cli, streamgmm.rerun_view; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mcap', 'mcap_ros2', "
            "'rosbags', 'pypcd4', 'plyfile', 'laspy', 'lazrs', 'rerun'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
