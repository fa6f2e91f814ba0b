"""`fetch` end to end on tiny archives in the official layouts: every converter, the download
(complete, cut off and resumed with Range, checksum mismatch), bad inputs, idempotence, the CLI.

Fixtures are built here (PIL images of a few pixels, zip/tar written by the standard library, RAR
by a small RAR 4 "store" writer) and served by a loopback HTTP server in a thread."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import focalbench
from focalbench.cli import app
from focalbench.datasets import catalog, dataset_status, fetch, get_split, load
from focalbench.datasets import download as download_mod
from focalbench.datasets.catalog import DatasetSpec, Source, SourceKind
from focalbench.datasets.fetch import remove_stale_staging
from focalbench.errors import FocalbenchError

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- fixture files


def encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def rgb(h: int = 12, w: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def blob(h: int = 12, w: int = 10, top: int = 2, left: int = 3, size: int = 4) -> np.ndarray:
    """A 0/255 square: its foreground count is size² (hand-checkable)."""
    m = np.zeros((h, w), np.uint8)
    m[top : top + size, left : left + size] = 255
    return m


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_rar4_stored(path: Path, files: dict[str, bytes], method: int = 0x30) -> Path:
    """A RAR 4.x archive with every member stored (method 0x30), CRCs included: marker block,
    main header, one file header + data per member, end-of-archive block. ``method=0x33`` labels
    the (still raw) data as compressed, which only an external RAR tool may decode."""

    def block(head_type: int, flags: int, body: bytes) -> bytes:
        header = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header

    out = [b"Rar!\x1a\x07\x00", block(0x73, 0, b"\0" * 6)]
    for name, data in files.items():
        raw = name.encode()
        dos_time = (2018 - 1980) << 25 | 1 << 21 | 1 << 16
        body = struct.pack(
            "<IIBIIBBHI",
            len(data),
            len(data),
            3,
            zlib.crc32(data),
            dos_time,
            20,
            method,
            len(raw),
            0o100644,
        )
        out += [block(0x74, 0x8000, body + raw), data]
    out.append(block(0x7B, 0x4000, b""))
    path.write_bytes(b"".join(out))
    return path


def drive_files(group: str, ids: list[str]) -> dict[str, bytes]:
    files = {}
    for i in ids:
        files[f"{group}/images/{i}_{group}.tif"] = encode(rgb(), "TIFF")
        files[f"{group}/1st_manual/{i}_manual1.gif"] = encode(blob(), "GIF")
        fov = np.zeros((12, 10), np.uint8)
        fov[1:11, 1:9] = 255
        files[f"{group}/mask/{i}_{group}_mask.gif"] = encode(fov, "GIF")
    return files


def dsb_files(n: int = 3) -> dict[str, bytes]:
    files = {}
    for k in range(n):
        ident = f"{k:02d}abc"
        rgba = np.dstack([rgb(16, 16), np.full((16, 16), 255, np.uint8)])
        files[f"{ident}/images/{ident}.png"] = encode(rgba, "PNG")
        files[f"{ident}/masks/m1.png"] = encode(blob(16, 16, 0, 0, 4), "PNG")
        files[f"{ident}/masks/m2.png"] = encode(blob(16, 16, 8, 8, 3), "PNG")
    return files


# ----------------------------------------------------------------------------- converters


def test_drive_from_the_two_official_zips_keeps_fov_and_the_official_partition(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_zip(src / "training.zip", drive_files("training", ["21", "22", "23", "24", "25"]))
    write_zip(src / "test.zip", drive_files("test", ["01", "02"]))
    with pytest.raises(
        FocalbenchError, match="test.zip has sha256 .*, expected d76c95c9"
    ):  # named like a published zip
        fetch(["drive"], from_path=src, progress=False)
    (src / "training.zip").rename(src / "train-copy.zip")
    (src / "test.zip").rename(src / "test-copy.zip")
    [result] = fetch(["drive"], from_path=src, progress=False)
    assert result["images"] == 7
    data = load("drive")
    assert data.ids == ["01", "02", "21", "22", "23", "24", "25"]
    assert data.images.shape == (7, 3, 12, 10) and data.fov is not None
    assert data.fov.sum(axis=(1, 2)).tolist() == [80] * 7  # 10x8 field of view
    assert data.masks.sum(axis=(1, 2)).tolist() == [16] * 7
    assert data.meta["foreground_pct"] == pytest.approx(100 * 16 / 120)
    assert data.meta["foreground_pct_fov"] == pytest.approx(100 * 16 / 80)
    split = get_split(data, "official", seed=0)
    assert split["test"].tolist() == [0, 1] and (len(split["train"]), len(split["val"])) == (4, 1)


def test_dsb_masks_are_the_union_of_per_nucleus_masks(tmp_path):
    archive = write_zip(tmp_path / "stage1_train.zip", dsb_files(3))
    fetch(["dsb2018"], from_path=archive, progress=False)
    data = load("dsb2018")
    assert data.images.shape == (3, 3, 16, 16)  # alpha dropped
    assert data.masks.sum(axis=(1, 2)).tolist() == [16 + 9] * 3
    splits = json.loads((tmp_path / "data" / "dsb2018" / "splits.json").read_text())
    # fixed-540-65-65 (paper 002) needs 670 images, so only the paper 000 rule is recorded here
    assert list(splits["splits"]) == ["random-64-16-20"]
    # documented rule: test = the first round(0.2·3) = 1 index of default_rng(0).permutation(3)
    first = int(np.random.default_rng(0).permutation(3)[0])
    assert splits["splits"]["random-64-16-20"]["test"] == [f"{first:02d}abc"]


def test_cvc_from_a_stored_rar_with_a_space_in_the_folder_name(tmp_path):
    files = {}
    for k in (1, 2, 10):
        files[f"CVC-ClinicDB/Original/{k}.tif"] = encode(rgb(8, 12), "TIFF")
        files[f"CVC-ClinicDB/Ground Truth/{k}.tif"] = encode(blob(8, 12, 0, 0, k % 5 + 1), "TIFF")
    archive = write_rar4_stored(tmp_path / "CVC-ClinicDB.rar", files)
    fetch(["cvc-clinicdb"], from_path=archive, progress=False)
    data = load("cvc-clinicdb")
    assert data.ids == ["1", "2", "10"]  # natural order
    assert data.masks.sum(axis=(1, 2)).tolist() == [4, 9, 1]
    expected = np.asarray(Image.open(io.BytesIO(files["CVC-ClinicDB/Original/2.tif"]))).transpose(
        2, 0, 1
    )
    assert (data.images[1] == expected).all()  # stored bytes decode to the original pixels


def test_compressed_rar_without_a_backend_names_the_package(tmp_path, monkeypatch):
    import rarfile

    monkeypatch.setattr(rarfile, "UNRAR_TOOL", "no-such-unrar")
    monkeypatch.setattr(rarfile, "UNAR_TOOL", "no-such-unar")
    monkeypatch.setattr(rarfile, "BSDTAR_TOOL", "no-such-bsdtar")
    monkeypatch.setattr(rarfile, "SEVENZIP_TOOL", "no-such-7z")
    monkeypatch.setattr(rarfile, "SEVENZIP2_TOOL", "no-such-7zz")
    monkeypatch.setattr(rarfile, "CURRENT_SETUP", None)  # probe the (missing) tools again
    files = {
        "CVC-ClinicDB/Original/1.tif": encode(rgb(8, 12), "TIFF"),
        "CVC-ClinicDB/Ground Truth/1.tif": encode(blob(8, 12), "TIFF"),
    }
    archive = write_rar4_stored(tmp_path / "CVC-ClinicDB.rar", files, method=0x33)
    with pytest.raises(
        FocalbenchError,
        match="no RAR tool was found; install a RAR backend: sudo apt-get install unar",
    ):
        fetch(["cvc-clinicdb"], from_path=archive, progress=False)


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from focalbench.datasets.prepared import PreparedWriter

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreparedWriter, "add", full)
    with pytest.raises(FocalbenchError, match="disk full while preparing dsb2018"):
        fetch(["dsb2018"], from_path=write_zip(tmp_path / "a.zip", dsb_files(1)), progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_isic_from_its_two_zips_needs_a_size_for_mixed_shapes(tmp_path):
    src = tmp_path / "isic"
    src.mkdir()
    inputs, truth = {}, {}
    for k, (h, w) in enumerate([(12, 16), (18, 24)]):
        inputs[f"ISIC2018_Task1-2_Training_Input/ISIC_000000{k}.jpg"] = encode(rgb(h, w), "JPEG")
        truth[f"ISIC2018_Task1_Training_GroundTruth/ISIC_000000{k}_segmentation.png"] = encode(
            blob(h, w, 0, 0, 6), "PNG"
        )
    write_zip(src / "inputs.zip", inputs)
    write_zip(src / "truth.zip", truth)
    fetch(["isic2018"], from_path=src, progress=False)
    with pytest.raises(FocalbenchError, match="2 different sizes.*size=\\(256, 256\\)"):
        load("isic2018")
    data = load("isic2018", size=(6, 8))
    assert data.images.shape == (2, 3, 6, 8) and set(np.unique(data.masks)) <= {0, 1}
    assert (Path(focalbench.datasets.data_root()) / "isic2018" / "cache" / "6x8.npz").is_file()


def test_jpeg_draft_decoding_matches_full_decoding(tmp_path):
    from focalbench.datasets.prepared import decode_image, resize_image

    yy, xx = np.mgrid[0:256, 0:320]
    smooth = np.dstack([yy % 256, xx % 256, (yy + xx) % 256]).astype(np.uint8)
    data = encode(smooth, "JPEG")
    drafted = decode_image(data, 3, draft=(16, 20))
    assert drafted.shape[1:] == (32, 40)  # 1/8 scale would be 32x40, the smallest >= 16x20
    full = resize_image(decode_image(data, 3), (16, 20))
    fast = resize_image(drafted, (16, 20))
    assert np.abs(full.astype(int) - fast.astype(int)).mean() < 3


def test_truncated_jpeg_fails_at_fetch_not_at_training(tmp_path):
    whole = encode(rgb(64, 64), "JPEG")
    files = {
        "ISIC2018_Task1-2_Training_Input/ISIC_1.jpg": whole[: len(whole) // 2],
        "ISIC2018_Task1_Training_GroundTruth/ISIC_1_segmentation.png": encode(blob(64, 64), "PNG"),
    }
    with pytest.raises(FocalbenchError, match="cannot read image .*ISIC_1.jpg.*truncated"):
        fetch(["isic2018"], from_path=write_tree(tmp_path / "isic", files), progress=False)


def test_tar_gz_source_and_an_archive_beside_its_extracted_folder(tmp_path):
    import tarfile

    src = write_tree(
        tmp_path / "lung",
        {
            "2d_images/a.tif": encode(rgb(6, 6)[:, :, 0], "TIFF"),
            "2d_masks/a.tif": encode(blob(6, 6, 0, 0, 2), "TIFF"),
        },
    )
    with tarfile.open(tmp_path / "lung.tar.gz", "w:gz") as tar:
        tar.add(src / "2d_images", arcname="2d_images")
        tar.add(src / "2d_masks", arcname="2d_masks")
    assert fetch(["lung"], from_path=tmp_path / "lung.tar.gz", progress=False)[0]["images"] == 1
    # Kaggle ships 2d_images.zip beside 2d_images/: the zip is skipped, not read as a duplicate
    write_zip(src / "2d_images.zip", {"2d_images/a.tif": encode(rgb(6, 6)[:, :, 0], "TIFF")})
    assert fetch(["lung"], from_path=src, force=True, progress=False)[0]["images"] == 1


def test_bus_greyscale_from_an_extracted_folder(tmp_path):
    files = {}
    for k in range(3):
        files[f"BUS_Dataset_B/original/{k:06d}.png"] = encode(
            rgb(10, 14), "PNG"
        )  # RGB file → 1 channel
        files[f"BUS_Dataset_B/GT/{k:06d}.png"] = encode(blob(10, 14, 1, 1, 3), "PNG")
    fetch(["bus"], from_path=write_tree(tmp_path / "BUS", files), progress=False)
    data = load("bus")
    assert data.images.shape == (3, 1, 10, 14) and data.masks.sum() == 27


def test_busi_merges_several_masks_and_skips_them_as_images(tmp_path):
    files = {
        "Dataset_BUSI_with_GT/benign/benign (1).png": encode(rgb(), "PNG"),
        "Dataset_BUSI_with_GT/benign/benign (1)_mask.png": encode(blob(size=2), "PNG"),
        "Dataset_BUSI_with_GT/benign/benign (1)_mask_1.png": encode(blob(top=8, size=3), "PNG"),
        "Dataset_BUSI_with_GT/normal/normal (1).png": encode(rgb(), "PNG"),
        "Dataset_BUSI_with_GT/normal/normal (1)_mask.png": encode(
            np.zeros((12, 10), np.uint8), "PNG"
        ),
    }
    fetch(["busi"], from_path=write_zip(tmp_path / "Dataset_BUSI.zip", files), progress=False)
    data = load("busi")
    assert data.ids == ["benign (1)", "normal (1)"]
    assert data.masks.sum(axis=(1, 2)).tolist() == [4 + 9, 0]


def test_lung_16_bit_tiff_is_scaled_per_image(tmp_path):
    ct = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    files = {
        "2d_images/ID_0000_Z_0142.tif": encode(ct, "TIFF"),
        "2d_masks/ID_0000_Z_0142.tif": encode(np.array([[0, 255], [255, 0]], np.uint8), "TIFF"),
    }
    fetch(["lung"], from_path=write_tree(tmp_path / "lung", files), progress=False)
    data = load("lung")
    assert data.images[0, 0].tolist() == [[0, 64], [128, 255]]  # round(255·v/4000)
    assert data.masks[0].tolist() == [[0, 1], [1, 0]]


# ----------------------------------------------------------------------------- bad input


def test_missing_mask_names_the_image_and_leaves_nothing(tmp_path):
    files = dsb_files(2)
    del files["01abc/masks/m1.png"], files["01abc/masks/m2.png"]
    with pytest.raises(FocalbenchError, match="1 image\\(s\\) of dsb2018 have no mask.*01abc"):
        fetch(["dsb2018"], from_path=write_zip(tmp_path / "a.zip", files), progress=False)
    assert [p.name for p in (tmp_path / "data").iterdir()] == []


def test_mask_without_image(tmp_path):
    files = {
        "BUS_Dataset_B/original/a.png": encode(rgb(), "PNG"),
        "BUS_Dataset_B/GT/a.png": encode(blob(), "PNG"),
        "BUS_Dataset_B/GT/b.png": encode(blob(), "PNG"),
    }
    with pytest.raises(FocalbenchError, match="mask\\(s\\) of bus have no image.*: b$"):
        fetch(["bus"], from_path=write_tree(tmp_path / "B", files), progress=False)


def test_wrong_dataset_archive_says_which_it_is(tmp_path):
    archive = write_zip(tmp_path / "stage1_train.zip", dsb_files(1))
    with pytest.raises(
        FocalbenchError, match="does not hold the cvc-clinicdb layout.*looks like 'dsb2018'"
    ):
        fetch(["cvc-clinicdb"], from_path=archive, progress=False)


def test_corrupt_zip_and_unreadable_image(tmp_path):
    good = write_zip(tmp_path / "good.zip", dsb_files(2)).read_bytes()
    (tmp_path / "cut.zip").write_bytes(good[: len(good) // 2])
    with pytest.raises(FocalbenchError, match="corrupt or truncated"):
        fetch(["dsb2018"], from_path=tmp_path / "cut.zip", progress=False)
    files = dsb_files(2)
    files["01abc/images/01abc.png"] = b"\x89PNG not really"
    with pytest.raises(FocalbenchError, match="cannot read image '.*01abc.png'") as info:
        fetch(["dsb2018"], from_path=write_zip(tmp_path / "bad.zip", files), progress=False)
    assert "BytesIO" not in str(info.value) and "not an image" in str(info.value)
    assert not (tmp_path / "data" / "dsb2018").exists()


def test_zip_with_a_bad_crc_is_corrupt(tmp_path):
    path = write_zip(
        tmp_path / "x.zip",
        {
            "BUS_Dataset_B/original/a.png": encode(rgb(), "PNG"),
            "BUS_Dataset_B/GT/a.png": encode(blob(), "PNG"),
        },
    )
    raw = bytearray(path.read_bytes())
    raw[60] ^= 0xFF  # inside the first member's stored data
    path.write_bytes(bytes(raw))
    with pytest.raises(FocalbenchError, match="corrupt or truncated"):
        fetch(["bus"], from_path=path, progress=False)


def test_unwritable_data_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(FocalbenchError, match="not writable.*--data-dir"):
        fetch(["dsb2018"], from_path=tmp_path, data_dir=blocker / "sub", progress=False)


def test_manual_dataset_says_what_to_get(tmp_path):
    with pytest.raises(
        FocalbenchError, match="request BUS 2017 dataset B.*focalbench fetch bus --from PATH"
    ):
        fetch(["bus"], progress=False)
    with pytest.raises(FocalbenchError, match="needs a Kaggle login: kaggle datasets download"):
        fetch(["lung"], progress=False)


def test_idempotent_and_force_replaces(tmp_path):
    archive = write_zip(tmp_path / "stage1_train.zip", dsb_files(2))
    assert fetch(["dsb2018"], from_path=archive, progress=False)[0]["status"].startswith("prepared")
    assert fetch(["dsb2018"], from_path=archive, progress=False)[0]["status"] == "already prepared"
    write_zip(archive, dsb_files(3))
    assert fetch(["dsb2018"], from_path=archive, force=True, progress=False)[0]["images"] == 3
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dsb2018"
    ]  # no temp or old folder left


def test_failed_force_keeps_the_old_prepared_dataset(tmp_path):
    fetch(["dsb2018"], from_path=write_zip(tmp_path / "a.zip", dsb_files(2)), progress=False)
    broken = dsb_files(3)
    broken["02abc/images/02abc.png"] = b"garbage"
    with pytest.raises(FocalbenchError):
        fetch(
            ["dsb2018"], from_path=write_zip(tmp_path / "b.zip", broken), force=True, progress=False
        )
    assert len(load("dsb2018").ids) == 2
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dsb2018"]


def test_the_next_fetch_removes_staging_left_by_a_killed_fetch_but_not_a_running_ones(tmp_path):
    """``kill -9`` leaves ``.<name>.tmp-<pid>/`` behind. The next fetch of that dataset deletes the
    ones whose pid is dead and keeps one whose pid is alive (another fetch at work; a subprocess
    here, since this process's own pid names the fetch's own staging folder), other datasets'
    leftovers and partial downloads (resumed with Range); ``datasets`` ignores all of them."""
    data = tmp_path / "data"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, live = data / f".dsb2018.tmp-{gone.pid}", data / f".dsb2018.tmp-{running.pid}"
        other = data / f".drive.tmp-{gone.pid}"
        part = data / "downloads" / "dsb2018" / "stage1_train.zip.part"
        for folder in (dead, live, other):
            folder.mkdir(parents=True)
            (folder / "meta.json").write_text(
                '{"n_images": 99}'
            )  # complete, killed before the rename
        part.parent.mkdir(parents=True)
        part.write_bytes(b"first half")
        listing = CliRunner().invoke(app, ["datasets", "--json"])
        assert listing.exit_code == 0, listing.output
        rows = {r["name"]: r for r in json.loads(listing.output)}
        assert list(rows) == catalog.dataset_names() and ".tmp" not in listing.output
        assert rows["dsb2018"]["status"] == rows["drive"]["status"] == "missing"

        archive = write_zip(tmp_path / "stage1_train.zip", dsb_files(2))
        assert fetch(["dsb2018"], from_path=archive, progress=False)[0]["images"] == 2
        assert not dead.exists() and live.is_dir() and other.is_dir()
        assert part.read_bytes() == b"first half"
        # killed while deleting the replaced dataset: removed by the next fetch, even an idle one
        old = data / f".dsb2018.old-{gone.pid}"
        old.mkdir()
        assert (
            fetch(["dsb2018"], from_path=archive, progress=False)[0]["status"] == "already prepared"
        )
        assert not old.exists() and live.is_dir()
        assert sorted(p.name for p in data.iterdir()) == sorted(
            [live.name, other.name, "downloads", "dsb2018"]
        )
        assert {r["name"]: r["images"] for r in dataset_status()}["dsb2018"] == 2
    finally:
        running.kill()
        running.wait()


def test_an_old_dataset_left_between_the_two_renames_is_kept(tmp_path):
    """Killed after moving ``dsb2018/`` aside but before the new one took its place: the
    ``.old-<pid>`` folder is the only prepared copy, so the next fetch leaves it alone."""
    data = tmp_path / "data"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale, old = data / f".dsb2018.tmp-{gone.pid}", data / f".dsb2018.old-{gone.pid}"
    for folder in (stale, old):
        folder.mkdir(parents=True)
    assert remove_stale_staging(data, "dsb2018") == [stale]
    assert old.is_dir()


# ----------------------------------------------------------------------------- download


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload``; honours ``Range: bytes=N-``; the first ``server.cut`` responses
    announce the full length but send only half of it, then drop the connection."""

    def do_GET(self) -> None:  # noqa: N802
        data: bytes = self.server.payload  # type: ignore[attr-defined]
        self.server.requests.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut > 0:  # type: ignore[attr-defined]
            self.server.cut -= 1  # type: ignore[attr-defined]
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.payload, srv.requests, srv.cut = b"", [], 0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def served_dsb(monkeypatch, server, tmp_path):
    """Point dsb2018's source at the loopback server; returns (server, payload, its sha256)."""
    payload = write_zip(tmp_path / "served.zip", dsb_files(2)).read_bytes()
    server.payload = payload
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(download_mod, "BACKOFF", 0.0)

    def with_source(sha: str) -> None:
        spec = catalog.get_spec("dsb2018")
        src = Source(
            "stage1_train.zip",
            SourceKind.http,
            f"http://127.0.0.1:{server.server_port}/s.zip",
            sha,
            0,
            "",
        )
        patched = DatasetSpec(**{**spec.__dict__, "sources": (src,)})
        reg = catalog.registry()
        monkeypatch.setitem(reg._entries, "dsb2018", patched)

    return server, payload, digest, with_source


def test_complete_download_verifies_and_prepares(served_dsb, tmp_path):
    server, payload, digest, with_source = served_dsb
    with_source(digest)
    [result] = fetch(["dsb2018"], progress=False)
    assert result["images"] == 2 and server.requests == [None]
    downloaded = tmp_path / "data" / "downloads" / "dsb2018"
    assert (downloaded / "stage1_train.zip").read_bytes() == payload
    assert not (downloaded / "stage1_train.zip.part").exists()
    assert json.loads((tmp_path / "data" / "dsb2018" / "meta.json").read_text())["sources"] == {
        "stage1_train.zip": digest
    }


def test_cut_off_download_resumes_with_range(served_dsb, tmp_path):
    server, payload, digest, with_source = served_dsb
    with_source("")  # nothing published: the sha256 seen is recorded
    server.cut = 1
    fetch(["dsb2018"], progress=False)
    half = len(payload) // 2
    assert server.requests == [None, f"bytes={half}-"]
    assert (
        tmp_path / "data" / "downloads" / "dsb2018" / "stage1_train.zip"
    ).read_bytes() == payload
    recorded = json.loads((tmp_path / "data" / "downloads" / "dsb2018" / "sha256.json").read_text())
    assert recorded == {"stage1_train.zip": digest}


def test_download_gives_up_after_retries_and_keeps_the_part(served_dsb, tmp_path, monkeypatch):
    server, payload, digest, with_source = served_dsb
    with_source(digest)
    monkeypatch.setattr(download_mod, "RETRIES", 1)
    server.cut = 5
    with pytest.raises(
        FocalbenchError, match="failed after 2 tries.*rerun the same command to resume"
    ):
        fetch(["dsb2018"], progress=False)
    part = tmp_path / "data" / "downloads" / "dsb2018" / "stage1_train.zip.part"
    have = part.stat().st_size
    assert 0 < have < len(payload)
    assert not (tmp_path / "data" / "downloads" / "dsb2018" / "stage1_train.zip").exists()
    server.cut = 0
    fetch(["dsb2018"], progress=False)  # the next fetch resumes from the part
    assert server.requests[-1] == f"bytes={have}-"
    assert not part.exists()


def test_disk_full_while_downloading_is_final_not_a_network_retry(
    served_dsb, tmp_path, monkeypatch
):
    import builtins
    import errno

    server, payload, digest, with_source = served_dsb
    with_source(digest)

    class Full(io.BytesIO):
        def write(self, data):  # type: ignore[override]
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(path, mode="r", *args, **kwargs):
        return Full() if str(path).endswith(".part") else builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(download_mod, "open", fake_open, raising=False)
    with pytest.raises(
        FocalbenchError,
        match="disk full while downloading to .*dsb2018; free space or pass --data-dir",
    ):
        fetch(["dsb2018"], progress=False)
    assert server.requests == [None]  # one request: no retries of a local failure
    assert not (tmp_path / "data" / "dsb2018").exists()


def test_checksum_mismatch_keeps_the_file_aside_and_prepares_nothing(served_dsb, tmp_path):
    server, payload, digest, with_source = served_dsb
    with_source("0" * 64)
    with pytest.raises(FocalbenchError, match=f"expected sha256 0{{64}}, saw {digest}"):
        fetch(["dsb2018"], progress=False)
    folder = tmp_path / "data" / "downloads" / "dsb2018"
    assert (folder / "stage1_train.zip.sha256-mismatch").read_bytes() == payload
    assert (
        not (folder / "stage1_train.zip").exists() and not (tmp_path / "data" / "dsb2018").exists()
    )


# ----------------------------------------------------------------------------- CLI


def test_cli_fetch_then_datasets_json(tmp_path):
    runner = CliRunner()
    archive = write_zip(tmp_path / "stage1_train.zip", dsb_files(3))
    out = runner.invoke(
        app, ["fetch", "dsb2018", "--from", str(archive), "--data-dir", str(tmp_path / "d")]
    )
    assert out.exit_code == 0, out.output
    assert "dsb2018: prepared (3 images; the full dataset has 670)" in out.output
    again = runner.invoke(
        app, ["fetch", "dsb2018", "--from", str(archive), "--data-dir", str(tmp_path / "d")]
    )
    assert "already prepared" in again.output
    listing = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path / "d"), "--json"])
    rows = {r["name"]: r for r in json.loads(listing.output)}
    assert rows["dsb2018"]["status"] == "prepared" and rows["dsb2018"]["images"] == 3
    assert rows["dsb2018"]["foreground_pct"] == pytest.approx(100 * 25 / 256)
    assert rows["dsb2018"]["splits"]["random-64-16-20"] == {"train": 1, "val": 1, "test": 1}
    assert rows["drive"]["status"] == "missing" and rows["sample"]["status"] == "prepared"
    table = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path / "d")])
    assert table.exit_code == 0 and "dsb2018" in table.output and "9.77" in table.output


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["fetch", "drvie"])
    assert (
        out.exit_code == 2
        and "error: unknown dataset 'drvie' (did you mean 'drive'?)" in out.output
    )
    out = runner.invoke(app, ["fetch"])
    assert out.exit_code == 2 and "name a dataset or pass --all" in out.output


def test_all_lists_what_manual_datasets_need(served_dsb, monkeypatch):
    server, payload, digest, with_source = served_dsb
    with_source(digest)
    reg = catalog.registry()
    for name in ("isic2018", "busi"):  # keep --all on the loopback server only
        monkeypatch.setitem(
            reg._entries, name, DatasetSpec(**{**reg.get(name).__dict__, "sources": ()})
        )
    results = {r["name"]: r for r in fetch(all=True, progress=False)}
    assert results["dsb2018"]["images"] == 2
    assert (
        results["drive"]["status"] == "needs a manual download"
        and "--from PATH" in results["drive"]["hint"]
    )
    assert [r["status"] for r in dataset_status() if r["name"] == "dsb2018"] == ["prepared"]


def test_one_failing_dataset_does_not_stop_the_others(served_dsb, tmp_path):
    server, payload, digest, with_source = served_dsb
    with_source(digest)
    out = CliRunner().invoke(app, ["fetch", "drive", "dsb2018"])
    assert out.exit_code == 2
    assert "drive: failed" in out.output and "--from PATH" in out.output  # what drive needs
    assert "dsb2018: prepared" in out.output  # fetched after drive failed
    assert (
        out.output.strip().splitlines()[-1]
        == "error: drive failed (see above); fix the cause and rerun the same command"
    )
