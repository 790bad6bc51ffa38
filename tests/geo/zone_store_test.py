"""Zone stores written by tessera, read back by zarrita (npm), numpy and crc32c.

    zone_store_test.py CASE WRITER ZARRITA_DIR TMP

CASE: values (placement, fill, metadata, southern tile, shared shard, new year, depth arrays,
shard index bytes), errors (one-line refusals, store left as it was), concurrent (two
processes writing tiles that share shards), killed (SIGKILL during writes, then a rerun).
Exits 77 (skip) when zarrita could not be installed.
"""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import crc32c
import numpy as np

CASE, WRITER, ZARRITA, TMP = sys.argv[1:5]
TESSERA = sys.argv[5] if len(sys.argv) > 5 else None  # the infer case runs the CLI
READER = os.path.join(ZARRITA, "read_zarr.mjs")
ZONE_W, ZONE_H = 17 * 4096, 489 * 4096
ORIGIN_X, ORIGIN_Y = 500000 - 5 * ZONE_W, 5 * ZONE_H


def setup():
    if not os.path.isfile(os.path.join(ZARRITA, "node_modules", "zarrita", "package.json")):
        print("SKIP: zarrita is not installed (npm or its registry unavailable)")
        sys.exit(77)
    shutil.copy(os.path.join(os.path.dirname(__file__), "read_zarr.mjs"), READER)
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)


def make_tile(name, h, w, dims, seed, holes=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-127, 128, size=(h, w, dims), dtype=np.int8)
    scales = rng.uniform(0.001, 0.5, size=(h, w)).astype(np.float32)
    if holes:  # pixels without an embedding: scale 0, codes 0
        scales[: h // 4, : w // 8] = 0
        codes[: h // 4, : w // 8] = 0
    paths = (os.path.join(TMP, name + ".npy"), os.path.join(TMP, name + "_scales.npy"))
    np.save(paths[0], codes)
    np.save(paths[1], scales)
    return codes, scales, paths


def write(store, epsg, x, y, year, paths, model="1.1", depths=None, check=True):
    args = [WRITER, store, str(epsg), repr(x), repr(y), str(year), paths[0], paths[1], model]
    if depths:
        args.append(depths)
    run = subprocess.run(args, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f"writer failed: {run.stderr}")
    return run


def read_many(store, requests):
    """[(array, selection)] read by zarrita in one run -> [(values, info)]."""
    todo = [{"array": a, "selection": sel, "out": os.path.join(TMP, f"read{i}.bin")}
            for i, (a, sel) in enumerate(requests)]
    run = subprocess.run(["node", READER, store, json.dumps(todo)],
                         capture_output=True, text=True, cwd=ZARRITA)
    if run.returncode != 0:
        raise AssertionError(f"zarrita cannot read {requests}: {run.stderr}")
    dtype = {"int8": np.int8, "float32": np.float32, "float64": np.float64, "int32": np.int32}
    return [(np.fromfile(t["out"], dtype=dtype[info["dtype"]]).reshape(info["shape"]), info)
            for t, info in zip(todo, json.loads(run.stdout))]


def read(store, array, selection):
    return read_many(store, [(array, selection)])[0]


def offset(x, y, southern=False):
    northing = y - 10_000_000 if southern else y
    return round((ORIGIN_Y - northing) / 10), round((x - ORIGIN_X) / 10)


def tile_requests(zone, t, row, col, codes, pad=0):
    h, w, _ = codes.shape
    rows, cols = [row - pad, row + h + pad], [col - pad, col + w + pad]
    return [(f"utm{zone:02d}/embeddings", [t, None, rows, cols]),
            (f"utm{zone:02d}/scales", [t, rows, cols])]


def check_tile(emb, sc, codes, scales, pad=0):
    h, w, _ = codes.shape
    inner = (slice(None), slice(pad, pad + h), slice(pad, pad + w))
    assert np.array_equal(emb[inner], codes.transpose(2, 0, 1)), "embeddings differ from the tile"
    want = np.where(scales == 0, np.float32("nan"), scales)
    assert np.array_equal(sc[inner[1:]], want, equal_nan=True), "scales differ from the tile"
    if pad:
        ring = np.ones(sc.shape, bool)
        ring[inner[1:]] = False
        assert np.all(emb[:, ring] == 0), "embeddings outside the tile are not the fill 0"
        assert np.all(np.isposinf(sc[ring])), "scales outside the tile are not the fill +inf"


def expect_tile(store, zone, t, row, col, codes, scales, pad=0):
    (emb, _), (sc, _) = read_many(store, tile_requests(zone, t, row, col, codes, pad))
    check_tile(emb, sc, codes, scales, pad)


def shard_index(path, chunks):
    data = open(path, "rb").read()
    body, crc = data[-4 - 16 * chunks:-4], struct.unpack("<I", data[-4:])[0]
    assert crc32c.crc32c(body) == crc, f"{path}: index crc32c does not match"
    return np.frombuffer(body, dtype="<u8").reshape(chunks, 2), len(data)


def case_values():
    store = os.path.join(TMP, "store")
    a, a_s, a_p = make_tile("a", 64, 96, 128, 1)
    x, y = 300000.0, 5_200_000.0
    write(store, 32631, x, y, 2024, a_p)
    row, col = offset(x, y)
    expect_tile(store, 31, 0, row, col, a, a_s, pad=8)
    check_metadata(store, row, col)
    check_shard_bytes(store, row, col, a, a_s)
    # A neighbour in the same shard (its right edge), then a new year, then the first again.
    b, b_s, b_p = make_tile("b", 64, 64, 128, 2)
    write(store, 32631, x + 960.0, y, 2024, b_p)
    expect_tile(store, 31, 0, row, col, a, a_s)
    expect_tile(store, 31, 0, row, col + 96, b, b_s)
    write(store, 32631, x, y, 2025, b_p)
    years, _ = read(store, "utm31/time", [None])
    assert years.tolist() == [2024, 2025], years
    expect_tile(store, 31, 1, row, col, b, b_s, pad=4)
    expect_tile(store, 31, 0, row, col, a, a_s)
    _, info = read(store, "utm31/embeddings", [0, 0, [0, 1], [0, 1]])
    assert info["array_shape"] == [2, 128, ZONE_H, ZONE_W], info
    check_southern(store, a, a_s, a_p)
    check_depths(a, a_s, a_p)
    print("values: placement, fill, metadata, shard bytes, shared shard, years, south, depths ok")


def check_metadata(store, row, col):
    root = json.load(open(os.path.join(store, "zarr.json")))
    attrs = root["attributes"]
    assert attrs["geoemb:model"] == "https://geotessera.org/model/1.1"
    assert attrs["geoemb:dimensions"] == 128 and attrs["geoemb:spatial_layout"] == "utm_zones"
    assert attrs["geoemb:quantization"]["scale"]["nodata"] == "+inf"
    group = json.load(open(os.path.join(store, "utm31", "zarr.json")))["attributes"]
    assert group["proj:code"] == "EPSG:32631"
    assert group["spatial:transform"] == [10.0, 0.0, ORIGIN_X, 0.0, -10.0, ORIGIN_Y]
    assert group["spatial:shape"] == [ZONE_H, ZONE_W]
    emb = json.load(open(os.path.join(store, "utm31", "embeddings", "zarr.json")))
    assert emb["dimension_names"] == ["time", "band", "y", "x"] and emb["fill_value"] == 0
    shard = emb["codecs"][0]["configuration"]
    assert shard["chunk_shape"] == [1, 128, 32, 32] and shard["index_location"] == "end"
    assert emb["chunk_grid"]["configuration"]["chunk_shape"] == [1, 128, 4096, 4096]
    blosc = shard["codecs"][1]["configuration"]
    assert (blosc["cname"], blosc["clevel"], blosc["shuffle"]) == ("zstd", 3, "bitshuffle")
    sc = json.load(open(os.path.join(store, "utm31", "scales", "zarr.json")))
    assert sc["fill_value"] == "Infinity" and sc["dimension_names"] == ["time", "y", "x"]
    assert sc["codecs"][0]["configuration"]["codecs"][1]["configuration"]["shuffle"] == "shuffle"
    (xs, _), (ys, _), (band, _) = read_many(store, [("utm31/x", [[col, col + 3]]),
                                                  ("utm31/y", [[row, row + 3]]),
                                                  ("utm31/band", [None])])
    assert np.allclose(xs, ORIGIN_X + (np.arange(col, col + 3) + 0.5) * 10), xs
    assert np.allclose(ys, ORIGIN_Y - (np.arange(row, row + 3) + 0.5) * 10), ys
    assert band.tolist() == list(range(128))


def check_shard_bytes(store, row, col, codes, scales):
    sr, sc = row // 4096, col // 4096
    path = os.path.join(store, "utm31", "embeddings", "c", "0", "0", str(sr), str(sc))
    index, size = shard_index(path, 128 * 128)
    present = index[:, 0] != 2**64 - 1
    # Chunks the tile touches, minus those it leaves all zero (none here: random codes).
    r0, c0 = (row % 4096) // 32, (col % 4096) // 32
    r1, c1 = ((row % 4096) + codes.shape[0] - 1) // 32, ((col % 4096) + codes.shape[1] - 1) // 32
    want = np.zeros((128, 128), bool)
    want[r0:r1 + 1, c0:c1 + 1] = True
    assert np.array_equal(present.reshape(128, 128), want), "present chunks are not the tile's"
    assert np.all(index[~present, 1] == 2**64 - 1), "absent chunks must be (2^64-1, 2^64-1)"
    ends = index[present, 0] + index[present, 1]
    assert ends.max() == size - 4 - 16 * 128 * 128, "chunks are not packed before the index"


def check_southern(store, a, a_s, a_p):
    x, y = 700000.0, 7_999_360.0  # EPSG:32731: a northing of -2 000 640 on the zone's grid
    write(store, 32731, x, y, 2024, a_p)
    row, col = offset(x, y, southern=True)
    assert ORIGIN_Y - row * 10 == -2_000_640, row
    expect_tile(store, 31, 0, row, col, a, a_s, pad=2)
    ys, _ = read(store, "utm31/y", [[row, row + 1]])
    assert ys[0] == -2_000_645.0, ys


def check_depths(a, a_s, a_p):
    store = os.path.join(TMP, "store_v2")
    x, y = 450000.0, 100_000.0
    write(store, 32610, x, y, 2025, a_p, model="2", depths="4,16")
    row, col = offset(x, y)
    expect_tile(store, 10, 0, row, col, a, a_s)
    for d in (4, 16):
        emb, info = read(store, f"utm10/embeddings_d{d}", [0, None, [row, row + 64], [col, col + 96]])
        assert np.array_equal(emb, a[:, :, :d].transpose(2, 0, 1)), f"depth {d} differs"
        band, _ = read(store, f"utm10/band_d{d}", [None])
        assert band.tolist() == list(range(d))
    root = json.load(open(os.path.join(store, "zarr.json")))["attributes"]
    assert root["geoemb:depths"] == [{"dimensions": 4, "array": "embeddings_d4"},
                                     {"dimensions": 16, "array": "embeddings_d16"},
                                     {"dimensions": 128, "array": "embeddings"}], root


def tree(store):
    """Every file of the store but locks and temp files, with its bytes."""
    files = {}
    for dirpath, _, names in os.walk(store):
        for n in names:
            if not n.endswith((".lock", ".partial")):
                p = os.path.join(dirpath, n)
                files[os.path.relpath(p, store)] = open(p, "rb").read()
    return files


def expect_refusal(run, message):
    assert run.returncode == 1, f"exit {run.returncode}: {run.stderr}"
    assert run.stderr == message + "\n", f"stderr {run.stderr!r}, expected {message!r}"


def case_errors():
    store = os.path.join(TMP, "store")
    a, a_s, a_p = make_tile("a", 64, 64, 128, 1)
    write(store, 32631, 300000.0, 5_200_000.0, 2024, a_p)
    before = tree(store)
    expect_refusal(write(store, 4326, 3.0, 52.0, 2024, a_p, check=False),
                   f"{a_p[0]}: CRS EPSG:4326 is not UTM (EPSG:326NN or 327NN); "
                   "a zone store holds UTM tiles")
    n, n_s, n_p = make_tile("n", 64, 64, 64, 3)  # 64 values per embedding, the store has 128
    expect_refusal(write(store, 32631, 300000.0, 5_200_000.0, 2024, n_p, check=False),
                   f"{store}/zarr.json: a store of another layout "
                   "(attributes.geoemb:dimensions is 128, expected 64); write into another store")
    expect_refusal(write(store, 32631, 300000.0, 5_200_000.0, 2024, a_p, model="1.0", check=False),
                   f"{store}/zarr.json: a store of another layout (attributes.geoemb:model is "
                   '"https://geotessera.org/model/1.1", expected '
                   '"https://geotessera.org/model/1.0"); write into another store')
    assert tree(store) == before, "a refused write changed the store"
    codecs = os.path.join(store, "utm31", "scales", "zarr.json")  # another compression level
    meta = json.load(open(codecs))
    meta["codecs"][0]["configuration"]["codecs"][1]["configuration"]["clevel"] = 5
    json.dump(meta, open(codecs, "w"))
    run = write(store, 32631, 300000.0, 5_200_000.0, 2024, a_p, check=False)
    assert run.returncode == 1 and run.stderr.startswith(
        f"{codecs}: a store of another layout (codecs is ["), run.stderr
    meta["codecs"][0]["configuration"]["codecs"][1]["configuration"]["clevel"] = 3
    json.dump(meta, open(codecs, "w"))
    before = tree(store)
    expect_refusal(write(store, 32631, -2_000_000.0, 5_200_000.0, 2024, a_p, check=False),
                   f"{a_p[0]}: the tile (origin -2000000, 5200000) lies outside "
                   "UTM zone 31's grid")
    assert tree(store) == before, "a refused write changed the store"
    # A corrupt shard (index checksum) is refused and left as it is.
    shard = os.path.join(store, "utm31", "scales", "c", "0", "117", "3")
    data = bytearray(open(shard, "rb").read())
    data[-10] ^= 0xFF
    open(shard, "wb").write(data)
    before = tree(store)
    expect_refusal(write(store, 32631, 300000.0, 5_200_000.0, 2024, a_p, check=False),
                   f"{shard}: corrupt shard (index checksum does not match); "
                   "remove it or restore it")
    assert tree(store) == before, "a refused write changed the store"
    open(shard, "wb").write(data[:100])  # shorter than its index
    expect_refusal(write(store, 32631, 300000.0, 5_200_000.0, 2024, a_p, check=False),
                   f"{shard}: corrupt shard (100 bytes, shorter than its 262148-byte index); "
                   "remove it or restore it")
    print("errors: non-UTM, other layout, outside the zone, corrupt shard ok")


# Run inside a new mount namespace (unshare -rm: no root needed where user namespaces are
# allowed): a 4 MiB tmpfs holding a copy of a one-tile store, filled up, then made read-only.
LIMITS_SCRIPT = r"""
set -e
mount -t tmpfs -o size=4m tmpfs "$MNT"
cp -a "$SRC" "$MNT/store"
listing() { cd "$MNT/store" && find . -type f ! -name '*.lock' ! -name '*.partial' -exec sha256sum {} + | sort; }
before=$(listing)
avail=$(df --output=avail -B1 "$MNT" | tail -1)
fallocate -l $((avail - 100000)) "$MNT/filler"
set +e
"$WRITER" "$MNT/store" 32631 300640.0 5200000.0 2024 "$CODES" "$SCALES" 1.1 2> "$OUT/full.err"
echo "full rc=$? same=$([ "$(listing)" = "$before" ] && echo yes || echo no)"
rm "$MNT/filler"
mount -o remount,ro "$MNT"
"$WRITER" "$MNT/store" 32631 300640.0 5200000.0 2024 "$CODES" "$SCALES" 1.1 2> "$OUT/ro.err"
echo "ro rc=$? same=$([ "$(listing)" = "$before" ] && echo yes || echo no)"
"""


def case_limits():
    a, a_s, a_p = make_tile("a", 64, 64, 128, 1)
    store = os.path.join(TMP, "store")
    write(store, 32631, 300000.0, 5_200_000.0, 2024, a_p)
    mnt = os.path.join(TMP, "mnt")
    os.makedirs(mnt)
    env = dict(os.environ, MNT=mnt, SRC=store, WRITER=WRITER, CODES=a_p[0], SCALES=a_p[1], OUT=TMP)
    run = subprocess.run(["unshare", "-rm", "sh", "-c", LIMITS_SCRIPT], env=env,
                         capture_output=True, text=True)
    if run.returncode != 0 or "ro rc=" not in run.stdout:
        print(f"SKIP: no private mount namespace here (unshare -rm: {run.stderr.strip()})")
        sys.exit(77)
    assert "full rc=1 same=yes" in run.stdout, run.stdout
    assert "ro rc=1 same=yes" in run.stdout, run.stdout
    full, ro = (open(os.path.join(TMP, n)).read() for n in ("full.err", "ro.err"))
    shard = f"{mnt}/store/utm31/embeddings/c/0/0/117/3"
    assert full.count("\n") == 1 and full.startswith(shard) and \
        full.endswith(": No space left on device\n"), full
    assert ro == f"{shard}: cannot create {shard}.partial: Read-only file system\n", ro
    print("limits: a full disk and a read-only store give one line and leave the store as it was")


# Four tiles meeting at a shard corner (shards (117, 3), (117, 4), ...): every shard is
# written by both processes.
def corner_tiles():
    cx, cy = ORIGIN_X + 4 * 4096 * 10, ORIGIN_Y - 117 * 4096 * 10 - 4000 * 10
    tiles = []
    for i, (dx, dy) in enumerate([(-640, 0), (0, 0), (-640, -640), (0, -640)]):
        codes, scales, paths = make_tile(f"t{i}", 64, 64, 128, 10 + i)
        tiles.append((cx + dx, cy + dy, codes, scales, paths))
    return tiles


def writer_cmd(store, tiles):
    return " && ".join(" ".join([WRITER, store, "32631", repr(x), repr(y), "2024", p[0], p[1], "1.1"])
                       for x, y, _, _, p in tiles)


def case_concurrent():
    tiles = corner_tiles()
    rng = random.Random(7)
    for trial in range(10):
        store = os.path.join(TMP, f"store{trial}")
        first = subprocess.Popen(["sh", "-c", writer_cmd(store, tiles[0::2])])
        time.sleep(rng.uniform(0, 1) if trial % 2 else rng.uniform(0, 0.05))
        second = subprocess.Popen(["sh", "-c", writer_cmd(store, tiles[1::2])])
        assert first.wait() == 0 and second.wait() == 0, f"trial {trial}: a writer failed"
        requests = [r for x, y, codes, _, _ in tiles for r in tile_requests(31, 0, *offset(x, y), codes)]
        read_back = read_many(store, requests)
        for i, (_, _, codes, scales, _) in enumerate(tiles):
            check_tile(read_back[2 * i][0], read_back[2 * i + 1][0], codes, scales)
        shutil.rmtree(store)
    print("concurrent: 10 trials of 2 processes x 2 tiles sharing shards, nothing lost")


def case_killed():
    big, big_s, big_p = make_tile("big", 256, 256, 128, 5)
    x, y = ORIGIN_X + 4 * 4096 * 10 - 1280, ORIGIN_Y - 117 * 4096 * 10 - 1280
    first = corner_tiles()[0]
    clean_big = os.path.join(TMP, "clean_big")  # the big tile alone, into a fresh store
    write(clean_big, 32631, x, y, 2024, big_p)
    clean = os.path.join(TMP, "clean")  # the big tile into a store holding a neighbour
    write(clean, 32631, first[0], first[1], 2024, first[4])
    start = time.monotonic()
    write(clean, 32631, x, y, 2024, big_p)
    duration = time.monotonic() - start
    expected, expected_big = tree(clean), tree(clean_big)
    rng = random.Random(11)
    interrupted = 0  # kills that left the write unfinished
    for trial in range(10):
        store = os.path.join(TMP, f"killed{trial}")
        fresh = trial < 3  # the first kills land while the store itself is being created
        if not fresh:
            write(store, 32631, first[0], first[1], 2024, first[4])
        before = tree(store) if not fresh else {}
        proc = subprocess.Popen([WRITER, store, "32631", repr(x), repr(y), "2024", *big_p, "1.1"])
        time.sleep(rng.uniform(0, duration * (3 if fresh else 1)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        new = expected_big if fresh else expected
        killed = tree(store)
        for name, data in killed.items():  # every file is old or new, never torn
            assert data in (before.get(name), new.get(name)), f"trial {trial}: {name} torn"
        interrupted += killed != new
        if fresh:
            write(store, 32631, first[0], first[1], 2024, first[4])
        write(store, 32631, x, y, 2024, big_p)
        assert tree(store) == expected, f"trial {trial}: the rerun's store differs from a clean run"
        shutil.rmtree(store)
    print(f"killed: 10 SIGKILLs within a {duration:.2f} s write ({interrupted} mid-write), "
          "every rerun equals a clean run")


def run_tessera(args):
    run = subprocess.run([TESSERA, *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise AssertionError(f"tessera {' '.join(args)} failed: {run.stderr}")
    return run


def case_infer():
    """synth -> infer --format npy,zarr: the store holds each tile's .npy outputs at the offset
    GEO_OUTPUTS.md gives, computed here with pyproj from the tile's roi.tiff."""
    from osgeo import gdal
    model = os.path.join(TMP, "v10.onnx")
    run_tessera(["make-model", "-o", model, "--d-model", "32", "--layers", "1", "--heads", "2",
                 "--ffn", "64"])
    tiles = []
    for lon, lat in [(0.15, 52.05), (147.05, -42.85)]:  # north (EPSG:32631), south (32755)
        tile = os.path.join(TMP, f"grid_{lon:.2f}_{lat:.2f}")
        run_tessera(["synth", "-o", tile, "--size", "12x10", "--s2-steps", "12", "--s1-steps", "4"])
        tiles.append(tile)
    out, store = os.path.join(TMP, "out"), os.path.join(TMP, "emb.zarr")
    run_tessera(["infer", *tiles, "-m", model, "-o", out, "--format", "npy,zarr", "--year", "2023",
                 "--store", store])
    for tile in tiles:
        grid = os.path.basename(tile)
        roi = gdal.Open(os.path.join(tile, "roi.tiff"))
        epsg = int(roi.GetSpatialRef().GetAuthorityCode(None))
        x, _, _, y, _, _ = roi.GetGeoTransform()
        row, col = offset(x, y, southern=epsg > 32700)
        codes = np.load(os.path.join(out, grid + ".npy"))
        scales = np.load(os.path.join(out, grid + "_scales.npy"))
        assert (scales == 0).any(), f"{grid}: no pixel without an embedding to check"
        expect_tile(store, epsg % 100, 0, row, col, codes, scales, pad=2)
    (years, _), = read_many(store, [("utm31/time", [None])])
    assert list(years) == [2023], f"time axis {list(years)}"
    root = json.load(open(os.path.join(store, "zarr.json")))
    assert "1.0" in root["attributes"]["geoemb:model"], root["attributes"]["geoemb:model"]
    # A rerun finds the tiles done and writes them again: the store's bytes do not change.
    before = tree(store)
    run_tessera(["infer", *tiles, "-m", model, "-o", out, "--format", "npy,zarr", "--year",
                 "2023", "--store", store])
    assert tree(store) == before, "a rerun changed the store"
    print("infer: two tiles (north, south) in their zones at the offsets of their roi.tiff")


setup()
{"infer": case_infer, "values": case_values, "errors": case_errors, "limits": case_limits,
 "concurrent": case_concurrent, "killed": case_killed}[CASE]()
