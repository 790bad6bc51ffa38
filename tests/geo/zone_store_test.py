"""Zone stores written by tessera, read back by zarrita (npm), numpy and crc32c.

    zone_store_test.py CASE WRITER ZARRITA_DIR TMP

CASE: values (placement, fill, metadata, southern tile, shared shard, new year, depth arrays,
shard index bytes), errors (one-line refusals, store left as it was), limits (full disk,
read-only store), killed (the writer driver SIGKILLed during writes, then a rerun); through
the CLI: infer (north, south and zone-edge tiles in GeoTIFFs and the store), refused (a store
infer cannot write into, before any tile runs), infer_concurrent (two infer runs into one
store), infer_killed (infer SIGKILLed, then rerun), export_upstream (upstream's and
geotessera's .npy outputs). Exits 77 (skip) when zarrita could not be installed.
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


# Four tiles meeting at a shard corner (shards (117, 3), (117, 4), ...).
def corner_tiles():
    cx, cy = ORIGIN_X + 4 * 4096 * 10, ORIGIN_Y - 117 * 4096 * 10 - 4000 * 10
    tiles = []
    for i, (dx, dy) in enumerate([(-640, 0), (0, 0), (-640, -640), (0, -640)]):
        codes, scales, paths = make_tile(f"t{i}", 64, 64, 128, 10 + i)
        tiles.append((cx + dx, cy + dy, codes, scales, paths))
    return tiles


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


def landmask_grid(lon, lat):
    """GEO_OUTPUTS.md section 2's grid of a cell (pyproj): EPSG, origin x, origin y."""
    from pyproj import Transformer
    zone = int(np.floor((lon + 180) / 6)) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    corners = [to_utm.transform(lon + dx, lat + dy) for dx in (-0.05, 0.05) for dy in (-0.05, 0.05)]
    return epsg, min(c[0] for c in corners), max(c[1] for c in corners)


def check_infer_geotiff(tif, epsg, x0, y0, codes, scales):
    """GDAL reads the tile's GeoTIFF: its CRS and origin are the cell's (1 mm), its values
    code x scale, NaN without an embedding."""
    from osgeo import gdal
    ds = gdal.Open(tif)
    assert ds.GetSpatialRef().GetAuthorityCode(None) == str(epsg), f"{tif}: not EPSG:{epsg}"
    t = ds.GetGeoTransform()
    assert abs(t[0] - x0) < 1e-3 and abs(t[3] - y0) < 1e-3, f"{tif}: origin {t[:4]}, {x0}, {y0}"
    assert (t[1], t[2], t[4], t[5]) == (10, 0, 0, -10), f"{tif}: transform {t}"
    want = codes.astype(np.float32) * scales[:, :, None]
    want[scales == 0] = np.nan
    got = ds.ReadAsArray()
    assert np.array_equal(got, want.transpose(2, 0, 1), equal_nan=True), f"{tif}: values differ"


def case_infer():
    """synth -> infer --format npy,geotiff,zarr: four cells (north; south; each side of the
    6-degree boundary between zones 31 and 32). GDAL reads each GeoTIFF and zarrita the store;
    each holds the tile's .npy outputs at the place GEO_OUTPUTS.md section 2 gives, computed
    here with pyproj."""
    model = os.path.join(TMP, "v10.onnx")
    run_tessera(["make-model", "-o", model, "--d-model", "32", "--layers", "1", "--heads", "2",
                 "--ffn", "64"])
    # (lon, lat, zone): 5.95 is the last cell of zone 31, 6.05 the first of zone 32.
    cells = [(0.15, 52.05, 31), (147.05, -42.85, 55), (5.95, 45.05, 31), (6.05, 45.05, 32)]
    tiles = []
    for lon, lat, _ in cells:
        tile = os.path.join(TMP, f"grid_{lon:.2f}_{lat:.2f}")
        run_tessera(["synth", "-o", tile, "--size", "12x10", "--s2-steps", "12", "--s1-steps", "4"])
        tiles.append(tile)
    out, store = os.path.join(TMP, "out"), os.path.join(TMP, "emb.zarr")
    run_tessera(["infer", *tiles, "-m", model, "-o", out, "--format", "npy,geotiff,zarr",
                 "--year", "2023", "--store", store])
    for (lon, lat, zone), tile in zip(cells, tiles):
        grid = os.path.basename(tile)
        epsg, x0, y0 = landmask_grid(lon, lat)
        assert epsg % 100 == zone, f"{grid}: the oracle puts it in zone {epsg % 100}"
        codes = np.load(os.path.join(out, grid + ".npy"))
        scales = np.load(os.path.join(out, grid + "_scales.npy"))
        assert (scales == 0).any(), f"{grid}: no pixel without an embedding to check"
        check_infer_geotiff(os.path.join(out, grid + ".tif"), epsg, x0, y0, codes, scales)
        row, col = offset(x0, y0, southern=lat < 0)
        expect_tile(store, zone, 0, row, col, codes, scales, pad=2)
    (years, _), = read_many(store, [("utm31/time", [None])])
    assert list(years) == [2023], f"time axis {list(years)}"
    assert sorted(n for n in os.listdir(store) if n.startswith("utm")) == ["utm31", "utm32",
                                                                         "utm55"]
    root = json.load(open(os.path.join(store, "zarr.json")))
    assert "1.0" in root["attributes"]["geoemb:model"], root["attributes"]["geoemb:model"]
    # A rerun finds the tiles done and writes them again: the store's bytes do not change.
    before = tree(store)
    run_tessera(["infer", *tiles, "-m", model, "-o", out, "--format", "npy,zarr", "--year",
                 "2023", "--store", store])
    assert tree(store) == before, "a rerun changed the store"
    print("infer: four tiles (north, south, both sides of a zone edge) in their GeoTIFFs and "
          "zones at the places pyproj computes")


def case_refused():
    """A store infer cannot write into is refused before any tile runs: one line, exit 1, no
    tile outputs, the store's bytes as they were."""
    narrow = os.path.join(TMP, "narrow.onnx")  # 64 values per embedding
    wide = os.path.join(TMP, "wide.onnx")  # 128
    for path, latent in ((narrow, "64"), (wide, "128")):
        run_tessera(["make-model", "-o", path, "--d-model", "32", "--layers", "1", "--heads", "2",
                     "--ffn", "64", "--latent", latent])
    tile = os.path.join(TMP, "grid_0.15_52.05")
    run_tessera(["synth", "-o", tile, "--size", "12x10", "--s2-steps", "12", "--s1-steps", "4"])
    store = os.path.join(TMP, "emb.zarr")
    run_tessera(["infer", tile, "-m", wide, "-o", os.path.join(TMP, "out"), "--format", "zarr",
                 "--year", "2023", "--store", store])
    before = tree(store)
    not_a_store = os.path.join(TMP, "file.zarr")
    open(not_a_store, "w").write("mine\n")
    for model, target, message in [
            (narrow, store, f"{store}/zarr.json: a store of another layout "
             "(attributes.geoemb:dimensions is 128, expected 64); write into another store"),
            (wide, not_a_store, f"{not_a_store}: not a directory (a zarr store is one); "
             "write into another store")]:
        out = os.path.join(TMP, "refused")
        run = subprocess.run([TESSERA, "infer", tile, "-m", model, "-o", out, "--format",
                              "npy,zarr", "--year", "2023", "--store", target],
                             capture_output=True, text=True)
        assert run.returncode == 1, f"exit {run.returncode}: {run.stderr}"
        engine = "tessera: engine: native fp32 (default: fastest fp32 engine here)\n"
        assert run.stderr == f"{engine}tessera: {message}\n" and run.stdout == "", \
            (run.stdout, run.stderr)
        assert not os.path.exists(out) or os.listdir(out) == [], f"tile outputs: {os.listdir(out)}"
    assert tree(store) == before, "a refused run changed the store"
    assert open(not_a_store).read() == "mine\n", "a refused run changed the file"
    print("refused: a store of another width and a file as --store, before any tile ran")


# Four adjacent 0.1-degree cells of zone 31, all in shard (103, 3): every tile rewrites the
# same shard files.
SHARED_SHARD_CELLS = ["grid_0.15_52.05", "grid_0.25_52.05", "grid_0.15_52.15", "grid_0.25_52.15"]


def infer_setup():
    """A tiny model, the four tiles, and a clean single run's outputs and store."""
    model = os.path.join(TMP, "v10.onnx")
    run_tessera(["make-model", "-o", model, "--d-model", "32", "--layers", "1", "--heads", "2",
                 "--ffn", "64"])
    tiles = []
    for grid in SHARED_SHARD_CELLS:
        tiles.append(os.path.join(TMP, grid))
        run_tessera(["synth", "-o", tiles[-1], "--size", "12x10", "--s2-steps", "12",
                     "--s1-steps", "4"])
    clean_out, clean_store = os.path.join(TMP, "clean"), os.path.join(TMP, "clean.zarr")
    start = time.monotonic()
    run_tessera(infer_args(model, tiles, clean_out, clean_store))
    duration = time.monotonic() - start
    return model, tiles, npy_outputs(clean_out), tree(clean_store), duration


def infer_args(model, tiles, out, store):
    return ["infer", *tiles, "-m", model, "-o", out, "--format", "zarr", "--year", "2024",
            "--store", store]


def npy_outputs(out):
    return {n: open(os.path.join(out, n), "rb").read()
            for n in sorted(os.listdir(out)) if n.endswith(".npy")}


def expect_clean(store, outs, clean_npy, clean_store, what):
    """The store's files and every run's .npy outputs, byte for byte, as the clean run's; the
    store's values as zarrita decodes them, as the clean run's .npy outputs."""
    assert tree(store) == clean_store, f"{what}: the store's files differ from a clean run's"
    for out in outs:
        got = npy_outputs(out)
        assert all(got[n] == clean_npy[n] for n in got), f"{what}: {out} differs from a clean run"
    from osgeo import gdal
    for grid in SHARED_SHARD_CELLS:
        roi = gdal.Open(os.path.join(TMP, grid, "roi.tiff"))
        x, _, _, y, _, _ = roi.GetGeoTransform()
        codes = np.load(os.path.join(TMP, "clean", grid + ".npy"))
        scales = np.load(os.path.join(TMP, "clean", grid + "_scales.npy"))
        expect_tile(store, 31, 0, *offset(x, y), codes, scales)


def case_infer_concurrent():
    """Two `tessera infer --format zarr` runs into one store, started 0-1 s apart, each with
    its own subset of the four tiles (overlapping in most trials) and output directory."""
    model, tiles, clean_npy, clean_store, duration = infer_setup()
    seed = random.randrange(2**32)
    print(f"infer_concurrent: seed {seed}, a clean run takes {duration:.2f} s")
    rng = random.Random(seed)
    for trial in range(10):
        store = os.path.join(TMP, f"concurrent{trial}.zarr")
        first = sorted(rng.sample(range(4), rng.randint(2, 4)))
        # The tiles the first lacks, and 1-3 of those it has: every tile written, most by both.
        shared = rng.sample(first, rng.randint(1, min(3, len(first))))
        second = sorted(set(range(4)) - set(first) | set(shared))
        delay = rng.uniform(0, 1)
        print(f"  trial {trial}: tiles {first} then {second} after {delay:.3f} s", flush=True)
        outs = [os.path.join(TMP, f"concurrent{trial}_{i}") for i in (0, 1)]
        procs = []
        for out, subset in zip(outs, (first, second)):
            args = infer_args(model, [tiles[i] for i in subset], out, store)
            procs.append(subprocess.Popen([TESSERA, *args], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
            if not procs[1:]:
                time.sleep(delay)
        for proc in procs:
            _, err = proc.communicate()
            assert proc.returncode == 0, f"trial {trial}: a run failed: {err}"
        expect_clean(store, outs, clean_npy, clean_store, f"trial {trial}")
        shutil.rmtree(store)
    print("infer_concurrent: 10 trials of 2 infer runs into one store equal a clean run")


def partial_in(store):
    """True when the store holds a file being written (a `.partial` beside its final name)."""
    for _, _, names in os.walk(store):
        if any(n.endswith(".partial") for n in names):
            return True
    return False


def kill_during_store_write(proc, store, deadline):
    """Polls the store for a file being written and kills `proc` then (returns True); at
    `deadline` or the run's end if it sees none."""
    seen = False
    while not seen and time.monotonic() < deadline and proc.poll() is None:
        seen = os.path.isdir(store) and partial_in(store)
    proc.send_signal(signal.SIGKILL)
    return seen


def case_infer_killed():
    """SIGKILL an `infer --format zarr` run, half the time while it writes the store (a
    `.partial` file seen), else after a random delay within a clean run's time; a rerun of the
    same command makes the store and the outputs of a clean run."""
    model, tiles, clean_npy, clean_store, duration = infer_setup()
    seed = random.randrange(2**32)
    print(f"infer_killed: seed {seed}, a clean run takes {duration:.2f} s")
    rng = random.Random(seed)
    interrupted = 0
    for trial in range(10):
        store, out = os.path.join(TMP, f"killed{trial}.zarr"), os.path.join(TMP, f"killed{trial}")
        args = infer_args(model, tiles, out, store)
        proc = subprocess.Popen([TESSERA, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if trial % 2 == 0:
            time.sleep(rng.uniform(0, 0.3 * duration))  # not always the first write
            seen = kill_during_store_write(proc, store, time.monotonic() + 2 * duration)
            when = "while a store file was being written" if seen else "(no store write seen)"
        else:
            when = f"after {rng.uniform(0, duration):.3f} s"
            time.sleep(float(when.split()[1]))
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
        interrupted += rc == -signal.SIGKILL
        rerun = subprocess.run([TESSERA, *args], capture_output=True, text=True)
        # A rerun without --force finishes the job whenever the kill came, also between a
        # tile's outputs and its record (the runner computes such a tile again).
        assert rerun.returncode == 0, f"trial {trial}: the rerun failed: {rerun.stderr}"
        print(f"  trial {trial}: killed {when} (exit {rc})", flush=True)
        expect_clean(store, [out], clean_npy, clean_store, f"trial {trial}")
        shutil.rmtree(store)
    assert interrupted >= 5, f"only {interrupted} of 10 runs were killed before they finished"
    print(f"infer_killed: 10 SIGKILLs ({interrupted} before the run ended), every rerun equals "
          "a clean run")


def write_landmask(path, lon, lat, height, width):
    """A uint8 landmask tiff of height x width pixels from the cell's north-west corner."""
    from osgeo import gdal, osr
    epsg, x0, y0 = landmask_grid(lon, lat)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((x0, 10, 0, y0, 0, -10))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetSpatialRef(srs)
    ds = None
    return epsg, x0, y0


def quantise_v2(values):
    """Upstream v2's --int8 (numpy): per pixel scale = absmax / 127, codes round(v / scale);
    0 scale (and codes) for a pixel of zeros."""
    scales = (np.abs(values).max(axis=-1) / np.float32(127)).astype(np.float32)
    safe = np.where(scales == 0, np.float32(1), scales)[..., None]
    codes = np.clip(np.round(values / safe), -127, 127).astype(np.int8)
    codes[scales == 0] = 0
    return codes, scales


def run_export(args):
    run = subprocess.run([TESSERA, "export", *args], capture_output=True, text=True)
    assert run.returncode == 0, f"export {args} failed: {run.stderr}"
    return run


def case_export_upstream():
    """`tessera export` of upstream's and geotessera's .npy outputs, read back by GDAL and
    zarrita against numpy: v1.0's pair in geotessera's download tree (its landmask found in
    landmasks/<version>/), v1.1's _emb128_ names, v2's float32 values quantised as upstream's
    --int8 does."""
    rng = np.random.default_rng(3)
    h, w = 12, 10
    # geotessera's download: npy/v1/2024/grid/grid.npy + _scales.npy, landmasks/v1/grid.tiff.
    grid = "grid_0.15_52.05"
    download = os.path.join(TMP, "geotessera", "npy", "v1", "2024")
    os.makedirs(os.path.join(download, grid))
    epsg, x0, y0 = write_landmask(os.path.join(TMP, "geotessera", "landmasks", "v1",
                                               grid + ".tiff"), 0.15, 52.05, h, w)
    codes = rng.integers(-127, 128, size=(h, w, 128), dtype=np.int8)
    scales = rng.uniform(0.001, 0.1, size=(h, w)).astype(np.float32)
    scales[:3, :4], codes[:3, :4] = 0, 0  # v1.0: unprocessed pixels
    np.save(os.path.join(download, grid, grid + ".npy"), codes)
    np.save(os.path.join(download, grid, grid + "_scales.npy"), scales)
    out = os.path.join(TMP, "geotessera_out")
    run_export([download, "--format", "geotiff", "-o", out, "--year", "2024"])
    check_infer_geotiff(os.path.join(out, grid + ".tif"), epsg, x0, y0, codes, scales)
    # A zone store names the model: outputs without a record need --model-version, and the
    # refusal comes before anything is written.
    v1_store = os.path.join(TMP, "geotessera_zarr")
    tile = os.path.join(download, grid, grid + ".npy")
    run = subprocess.run([TESSERA, "export", download, "--format", "geotiff,zarr", "-o", v1_store,
                          "--year", "2024"], capture_output=True, text=True)
    assert (run.returncode, run.stdout) == (1, ""), (run.returncode, run.stdout, run.stderr)
    assert run.stderr == (f"tessera: {tile}: the version of the model that made its outputs is "
                          "not recorded (no <grid>.tessera.json beside them): a zarr store names "
                          "it; give --model-version\n"), run.stderr
    assert not os.path.exists(v1_store), os.listdir(v1_store)
    run_export([download, "--format", "zarr", "-o", v1_store, "--year", "2024",
                "--model-version", "v1.0"])
    expect_tile(os.path.join(v1_store, "tessera.zarr"), 31, 0, *offset(x0, y0), codes, scales,
                pad=2)
    attrs = json.load(open(os.path.join(v1_store, "tessera.zarr", "zarr.json")))["attributes"]
    assert attrs["geoemb:model"] == "https://geotessera.org/model/1.0", attrs["geoemb:model"]
    # Upstream v1.1: <prefix>_emb128_int8.npy + <prefix>_emb128_scales.npy, placed by --tiles-dir.
    v11, masks = os.path.join(TMP, "v11"), os.path.join(TMP, "masks")
    os.makedirs(v11)
    grid = "grid_147.05_-42.85"
    epsg, x0, y0 = write_landmask(os.path.join(masks, grid + ".tiff"), 147.05, -42.85, h, w)
    np.save(os.path.join(v11, grid + "_emb128_int8.npy"), codes)
    np.save(os.path.join(v11, grid + "_emb128_scales.npy"), scales)
    run = subprocess.run([TESSERA, "export", v11, "--format", "geotiff", "--tiles-dir", masks,
                          "--year", "2024", "--model-version", "v2"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr == (
        f"tessera: {os.path.join(v11, grid)}_emb128_int8.npy: its outputs are of model v1.1 (their record or names "
        "say so), not --model-version v2\n"), (run.returncode, run.stderr)
    assert sorted(os.listdir(v11)) == [grid + "_emb128_int8.npy", grid + "_emb128_scales.npy"]
    run_export([v11, "--format", "geotiff,zarr", "--tiles-dir", masks, "--year", "2024"])
    check_infer_geotiff(os.path.join(v11, grid + ".tif"), epsg, x0, y0, codes, scales)
    from osgeo import gdal
    version = gdal.Open(os.path.join(v11, grid + ".tif")).GetMetadata()["TESSERA_DATASET_VERSION"]
    assert version == "v1.1", version
    store = os.path.join(v11, "tessera.zarr")
    expect_tile(store, 55, 0, *offset(x0, y0, southern=True), codes, scales, pad=2)
    attrs = json.load(open(os.path.join(store, "zarr.json")))["attributes"]
    assert attrs["geoemb:model"] == "https://geotessera.org/model/1.1", attrs["geoemb:model"]
    # Upstream v2: a float32 <grid>.npy alone, quantised per pixel as its --int8 does.
    v2 = os.path.join(TMP, "v2")
    os.makedirs(v2)
    grid = "grid_5.95_45.05"
    epsg, x0, y0 = write_landmask(os.path.join(v2, grid + ".tiff"), 5.95, 45.05, h, w)
    values = rng.normal(0, 3, size=(h, w, 32)).astype(np.float32)
    values[5, :] = 0  # pixels without an embedding
    np.save(os.path.join(v2, grid + ".npy"), values)
    codes, scales = quantise_v2(values)
    assert (scales == 0).sum() == w and np.abs(codes).max() == 127
    run_export([v2, "--format", "geotiff,zarr", "--year", "2025"])
    check_infer_geotiff(os.path.join(v2, grid + ".tif"), epsg, x0, y0, codes, scales)
    store = os.path.join(v2, "tessera.zarr")
    row, col = offset(x0, y0)
    expect_tile(store, 31, 0, row, col, codes, scales, pad=2)
    for d in (4, 16):
        emb, _ = read(store, f"utm31/embeddings_d{d}", [0, None, [row, row + h], [col, col + w]])
        assert np.array_equal(emb, codes[:, :, :d].transpose(2, 0, 1)), f"depth {d} differs"
    print("export_upstream: geotessera's download tree, v1.1's names, v2's float32 values")


setup()
{"export_upstream": case_export_upstream, "infer_concurrent": case_infer_concurrent, "infer_killed": case_infer_killed,
 "refused": case_refused, "infer": case_infer, "values": case_values, "errors": case_errors, "limits": case_limits,
 "killed": case_killed}[CASE]()
