#!/usr/bin/python3
"""`tessera infer --format npy,geotiff` and `tessera export`, read by GDAL, pyproj and numpy.

Each GeoTIFF is checked against readers tessera did not write: its CRS (EPSG), its transform
against the landmask grid of its cell computed here with pyproj (GEO_OUTPUTS.md section 2, to
1 mm), shape, bands, 256 x 256 tiles, LAYOUT=COG, ZSTD, tags, NaN nodata where the scale is 0
and every value == int8 code x scale (numpy, from the .npy outputs). Then the bad inputs, each
with its exact one-line message, a non-zero exit and no outputs.

Usage: geotiff_cli_test.py --tessera BIN --workdir DIR --case infer|errors|export
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
from osgeo import gdal
from pyproj import Transformer

gdal.UseExceptions()

SMALL_V10 = ["--d-model", "32", "--layers", "1", "--heads", "2", "--ffn", "64"]
SYNTH = ["--size", "12x10", "--s2-steps", "12", "--s1-steps", "4"]


def run(args, expect=0, cwd=None):
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != expect:
        sys.exit(f"{' '.join(args)}: exit {result.returncode}, expected {expect}\n"
                 f"{result.stdout}{result.stderr}")
    return result


def check(condition, message):
    if not condition:
        sys.exit("geotiff_cli_test: " + message)


def landmask_grid(lon, lat):
    """Section 2's landmask grid of a cell: EPSG, origin, width, height (pyproj)."""
    zone = math.floor((lon + 180) / 6) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    corners = [to_utm.transform(lon + dx, lat + dy) for dx in (-0.05, 0.05) for dy in (-0.05, 0.05)]
    xs = [c[0] for c in corners]
    ys = [c[1] for c in corners]
    return epsg, min(xs), max(ys), round((max(xs) - min(xs)) / 10), round((max(ys) - min(ys)) / 10)


def expected_values(npy, scales_npy):
    codes = np.load(npy)
    scales = np.load(scales_npy)
    values = codes.astype(np.float32) * scales[:, :, None]
    values[scales == 0] = np.nan
    return values.transpose(2, 0, 1), scales


def check_geotiff(path, npy, scales_npy, lon, lat, year, version, size=None):
    """The GeoTIFF at `path` against the cell's grid and the .npy outputs."""
    epsg, x0, y0, width, height = landmask_grid(lon, lat)
    values, scales = expected_values(npy, scales_npy)
    ds = gdal.Open(path)
    check(ds.GetSpatialRef().GetAuthorityCode(None) == str(epsg),
          f"{path}: EPSG {ds.GetSpatialRef().GetAuthorityCode(None)}, expected {epsg}")
    t = ds.GetGeoTransform()
    check(abs(t[0] - x0) < 1e-3 and abs(t[3] - y0) < 1e-3, f"{path}: origin {t[0]}, {t[3]}, "
          f"expected {x0}, {y0}")
    check(t[1] == 10 and t[5] == -10 and t[2] == 0 and t[4] == 0, f"{path}: transform {t}")
    h, w = size if size else (height, width)
    check((ds.RasterYSize, ds.RasterXSize) == (h, w) == scales.shape,
          f"{path}: size {ds.RasterYSize} x {ds.RasterXSize}, expected {h} x {w}")
    check(ds.RasterCount == values.shape[0], f"{path}: {ds.RasterCount} bands")
    structure = ds.GetMetadata("IMAGE_STRUCTURE")
    check(structure.get("LAYOUT") == "COG", f"{path}: layout {structure}")
    check(structure.get("COMPRESSION") == "ZSTD", f"{path}: compression {structure}")
    info = gdal.Info(path)
    check("LAYOUT=COG" in info, f"{path}: gdalinfo does not say LAYOUT=COG")
    tags = ds.GetMetadata()
    want = {"TESSERA_DATASET_VERSION": version, "TESSERA_TILE_LAT": f"{lat:.2f}",
            "TESSERA_TILE_LON": f"{lon:.2f}", "TESSERA_YEAR": str(year)}
    for key, value in want.items():
        check(tags.get(key) == value, f"{path}: tag {key} = {tags.get(key)}, expected {value}")
    check("TESSERA_DESCRIPTION" in tags, f"{path}: no TESSERA_DESCRIPTION")
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        check(band.GetDescription() == f"Tessera_Band_{b - 1}", f"{path}: band {b} description")
        check(band.GetBlockSize() == [256, 256], f"{path}: blocks {band.GetBlockSize()}")
        check(math.isnan(band.GetNoDataValue()), f"{path}: nodata {band.GetNoDataValue()}")
    read = ds.ReadAsArray().reshape(values.shape)
    check(read.dtype == np.float32, f"{path}: dtype {read.dtype}")
    check(np.array_equal(read, values, equal_nan=True), f"{path}: values differ from code x scale")
    check((scales == 0).any(), f"{scales_npy}: no pixel without an embedding to check")
    check(np.isnan(read[:, scales == 0]).all() and not np.isnan(read[:, scales != 0]).any(),
          f"{path}: NaN is not exactly where the scale is 0")
    return ds


def infer_case(tessera, work, model):
    """Three places in one run: the demo's cell, a southern cell, a cell on a zone's edge."""
    cells = [(0.15, 52.05), (147.05, -42.85), (6.05, 45.05)]
    tiles = []
    for lon, lat in cells:
        tile = os.path.join(work, f"grid_{lon:.2f}_{lat:.2f}")
        run([tessera, "synth", "-o", tile] + SYNTH)
        tiles.append(tile)
    out = os.path.join(work, "out")
    result = run([tessera, "infer", *tiles, "-m", model, "-o", out, "--format", "npy,geotiff",
                  "--year", "2024"])
    for (lon, lat), tile in zip(cells, tiles):
        grid = os.path.basename(tile)
        tif = os.path.join(out, grid + ".tif")
        check(tif in result.stdout, f"the tile line does not name {tif}:\n{result.stdout}")
        check_geotiff(tif, os.path.join(out, grid + ".npy"),
                      os.path.join(out, grid + "_scales.npy"), lon, lat, 2024, "v1.0",
                      size=(12, 10))
    check(gdal.Open(os.path.join(tiles[1], "roi.tiff")).GetSpatialRef().GetAuthorityCode(None)
          == "32755", "the southern tile's roi.tiff is not EPSG:32755")
    # A rerun skips the done tiles, and makes a missing GeoTIFF from the existing outputs.
    first = os.path.join(out, os.path.basename(tiles[0]) + ".tif")
    os.remove(first)
    before = os.stat(os.path.join(out, os.path.basename(tiles[1]) + ".tif")).st_mtime_ns
    result = run([tessera, "infer", *tiles, "-m", model, "-o", out, "--format", "geotiff",
                  "--year", "2024"])
    check(f"skipped, outputs exist in {out} (--force recomputes); made {first}" in result.stdout,
          f"the rerun did not say it made {first}:\n{result.stdout}")
    check(os.path.exists(first), "the missing GeoTIFF was not made again")
    check(os.stat(os.path.join(out, os.path.basename(tiles[1]) + ".tif")).st_mtime_ns == before,
          "an existing GeoTIFF of a skipped tile was rewritten")


def expect_error(args, code, line, out=None):
    result = run(args, expect=code)
    check(result.stderr.strip().splitlines()[-1] == "tessera: " + line,
          f"{' '.join(args)}:\nexpected: tessera: {line}\ngot:      {result.stderr.strip()}")
    if out:
        check(not os.path.exists(out) or not os.listdir(out), f"{out}: outputs left: "
              f"{os.listdir(out) if os.path.exists(out) else ''}")


def write_tiff(path, height, width, epsg=32631, transform=(300000, 10, 0, 5800000, 0, -10)):
    ds = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Byte)
    if transform:
        ds.SetGeoTransform(transform)
    if epsg:
        from osgeo import osr
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetSpatialRef(srs)
    ds = None


def errors_case(tessera, work, model):
    tile = os.path.join(work, "grid_0.15_52.05")
    run([tessera, "synth", "-o", tile] + SYNTH)
    roi = os.path.join(tile, "roi.tiff")
    out = os.path.join(work, "out")
    base = [tessera, "infer", tile, "-m", model, "-o", out]
    infer = base + ["--format", "npy,geotiff"]
    write_tiff(roi, 5, 7)
    expect_error(infer, 1, f"{roi}: is 5 x 7 pixels (H x W), but {tile} is 12 x 10", out)
    write_tiff(roi, 12, 10, epsg=None)
    expect_error(infer, 1, f"{roi}: has no CRS (need a projected CRS)", out)
    write_tiff(roi, 12, 10, transform=(300000, 10, 1, 5800000, 0, -10))
    expect_error(infer, 1, f"{roi}: its grid is rotated (geotransform [300000, 10, 1, 5800000, 0, "
                 "-10]): need north-up", out)
    with open(roi, "wb") as f:
        f.write(b"not a tiff at all" * 10)
    expect_error(infer, 1, f"{roi}: not a GeoTIFF (GDAL does not recognise its format)", out)
    os.remove(roi)  # the grid name's landmask grid is 1139 x 729 pixels, not 12 x 10
    expect_error(infer, 1, f"{tile}: the landmask grid of grid_0.15_52.05 is 1139 x 729 pixels "
                 "(H x W), but the tile is 12 x 10 (give it a roi.tiff)", out)
    plain = os.path.join(work, "plain")
    run([tessera, "synth", "-o", plain] + SYNTH)
    os.remove(os.path.join(plain, "roi.tiff"))
    expect_error([tessera, "infer", plain, "-m", model, "-o", out, "--format", "geotiff"], 1,
                 f"{plain}: cannot place it on Earth for --format geotiff: it has no roi.tiff and "
                 "its name is not grid_<lon>_<lat> (npy outputs need no place)", out)
    run([tessera, "infer", plain, "-m", model, "-o", out])  # npy needs no place
    check(sorted(os.listdir(out)) == ["plain.lock", "plain.npy", "plain.tessera.json",
                                      "plain_scales.npy"], f"npy outputs: {os.listdir(out)}")
    shutil.rmtree(out)
    expect_error(base + ["--format", "zarr"], 2,
                 "--format zarr needs --year (the zarr store's time axis)", out)
    expect_error(base + ["--format", "npy,tiff"], 2,
                 "--format: unknown format 'tiff' (npy, geotiff or zarr, comma separated)", out)
    expect_error(base + ["--format", "geotiff", "--store", "s.zarr"], 2,
                 "--store applies to --format zarr only", out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--case", required=True, choices=["infer", "errors", "export"])
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    model = os.path.join(args.workdir, "small.onnx")
    run([args.tessera, "make-model", "-o", model] + SMALL_V10)
    {"infer": infer_case, "errors": errors_case, "export": export_case}[args.case](
        args.tessera, args.workdir, model)
    print(f"geotiff_cli_test {args.case}: ok")


def export_case(tessera, work, model):
    """tessera's own run (roi.tiff via --tiles-dir), and geotessera's NPY layout placed by the
    grid name alone (a whole 0.1 degree cell, so overviews too) or by a landmask tiff."""
    tiles = os.path.join(work, "tiles")
    tile = os.path.join(tiles, "grid_147.05_-42.85")
    run([tessera, "synth", "-o", tile] + SYNTH)
    run_dir = os.path.join(work, "run")
    run([tessera, "infer", tile, "-m", model, "-o", run_dir])
    exported = os.path.join(work, "exported")
    result = run([tessera, "export", run_dir, "--format", "geotiff", "--tiles-dir", tiles,
                  "-o", exported + "/", "--year", "2023"])
    tif = os.path.join(exported, "grid_147.05_-42.85.tif")
    check(result.stdout == f"grid_147.05_-42.85: -> {exported}/{os.path.basename(tif)}\n",
          f"export said: {result.stdout}")
    check_geotiff(tif, os.path.join(run_dir, "grid_147.05_-42.85.npy"),
                  os.path.join(run_dir, "grid_147.05_-42.85_scales.npy"), 147.05, -42.85, 2023,
                  "v1.0", size=(12, 10))
    expect_error([tessera, "export", run_dir, "--format", "geotiff", "--tiles-dir", tiles, "-o",
                  exported], 1, f"{tif}: already exists (use --force to overwrite)")
    # geotessera's download: npy/v1/2024/grid_X_Y/grid_X_Y.npy, no record, no roi.tiff.
    lon, lat = 6.05, 45.05  # on the edge of UTM zones 31 and 32
    epsg, x0, y0, width, height = landmask_grid(lon, lat)
    grid = f"grid_{lon:.2f}_{lat:.2f}"
    download = os.path.join(work, "npy", "v1", "2024")
    os.makedirs(os.path.join(download, grid))
    rng = np.random.default_rng(7)
    codes = rng.integers(-127, 128, size=(height, width, 4), dtype=np.int8)
    scales = rng.uniform(0.001, 0.1, size=(height, width)).astype(np.float32)
    scales[:50, :70] = 0
    npy = os.path.join(download, grid, grid + ".npy")
    np.save(npy, codes)
    np.save(os.path.join(download, grid, grid + "_scales.npy"), scales)
    result = run([tessera, "export", download, "--format", "geotiff", "--year", "2024"])
    check(f"{npy}: no roi.tiff; placed on the landmask grid of its name (EPSG:{epsg})"
          in result.stderr, f"export did not say where the grid came from: {result.stderr}")
    tif = os.path.join(download, grid + ".tif")
    ds = check_geotiff(tif, npy, os.path.join(download, grid, grid + "_scales.npy"), lon, lat,
                       2024, None)
    check(ds.GetRasterBand(1).GetOverviewCount() >= 2, f"{tif}: no overviews")
    # A landmask tiff beside the outputs places them instead; one of another size is refused.
    landmask = os.path.join(download, grid, grid + ".tiff")
    write_tiff(landmask, 3, 4)
    expect_error([tessera, "export", download, "--format", "geotiff", "--force"], 1,
                 f"{landmask}: is 3 x 4 pixels (H x W), but {npy} is {height} x {width}")
    check(os.path.exists(tif), "a failed export removed an earlier output")


if __name__ == "__main__":
    main()
