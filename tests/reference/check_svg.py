#!/usr/bin/env python3
"""Checks `tessera report` and `tessera project` from the outside, as a user runs them.

  check_svg.py report --tessera BIN --data DIR --out DIR
      Writes a report from the sample bench files, then checks: the expected chart files exist
      and are linked from the Markdown; every SVG is well-formed XML with a <title>, a visible
      title, axis labels and one polyline per line series / one rect per bar; nothing external
      is referenced; a bad JSON input fails with the exact one-line error and writes nothing;
      `tessera project` agrees with the arithmetic done here independently.
  check_svg.py render --tessera BIN --data DIR --out DIR
      Renders every chart with headless Chromium and checks each PNG is a real, non-blank image.
      Exits 77 (skipped) when Chromium is not installed.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

SVG = "{http://www.w3.org/2000/svg}"
SKIP = 77
INPUTS = ["sweep_threads.json", "sweep_batch.json", "layouts_torch.json"]
# chart -> (element that draws one series or bar, how many)
EXPECTED = {
    "thread_scaling_ms_per_pixel.svg": ("polyline", 1),
    "thread_scaling_speedup.svg": ("polyline", 1),
    "batch_sweep.svg": ("polyline", 2),
    "layouts.svg": ("rect", 4),
    "devices.svg": ("rect", 6),
    "projection_mgrs_tile.svg": ("rect", 14),
}


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def make_report(args):
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    md = os.path.join(args.out, "report.md")
    r = run([args.tessera, "report", "--from"] + [os.path.join(args.data, f) for f in INPUTS] +
            ["-o", md])
    if r.returncode != 0:
        fail("tessera report exited %d: %s" % (r.returncode, r.stderr.strip()))
    return md, os.path.join(args.out, "report_charts")


def check_svg(path, element, count):
    name = os.path.basename(path)
    root = ET.parse(path).getroot()  # raises on malformed XML
    if root.tag != SVG + "svg" or not root.get("viewBox"):
        fail(name + ": root is not <svg> with a viewBox")
    title = root.find(SVG + "title")
    if title is None or not (title.text or "").strip():
        fail(name + ": no <title>")
    texts = [t for t in root.iter(SVG + "text")]
    visible = [t for t in texts if t.get("class") == "title"]
    if len(visible) != 1 or visible[0].text != title.text:
        fail(name + ": no visible title matching <title>")
    for t in texts:
        size = int(t.get("font-size", "0"))
        if not 12 <= size <= 15:
            fail("%s: text '%s' has font-size %d" % (name, t.text, size))
    if element == "polyline":
        # y label (rotated) and x label, both naming units
        labels = [t.text for t in texts if t.get("font-size") == "13"]
        if len(labels) != 2 or not all(labels):
            fail(name + ": expected two axis labels, got %r" % labels)
        drawn = [p for p in root.iter(SVG + "polyline") if p.get("class") == "series"]
        for p in drawn:
            if len(p.get("points").split()) < 2:
                fail(name + ": a series with fewer than 2 points")
    else:
        labels = [t.text for t in texts if t.get("font-size") == "13"]
        if not labels or not all(labels):
            fail(name + ": no axis label")
        drawn = [r for r in root.iter(SVG + "rect") if r.get("class") == "bar"]
    if len(drawn) != count:
        fail("%s: %d %s elements, expected %d" % (name, len(drawn), element, count))
    for el in root.iter():
        if el.tag in (SVG + "script", SVG + "image", SVG + "foreignObject"):
            fail(name + ": external or active content " + el.tag)
        for key in el.attrib:
            if key.endswith("href"):
                fail(name + ": link attribute " + key)


def check_report(args):
    md, charts = make_report(args)
    found = sorted(f for f in os.listdir(charts) if f.endswith(".svg"))
    if found != sorted(EXPECTED):
        fail("charts %r, expected %r" % (found, sorted(EXPECTED)))
    text = open(md, encoding="utf-8").read()
    for name, (element, count) in EXPECTED.items():
        if "](<report_charts/%s>)" % name not in text:
            fail("report.md does not link " + name)
        check_svg(os.path.join(charts, name), element, count)

    # Bad JSON: exact one-line error naming the file, exit 1, nothing written.
    bad = os.path.join(args.data, "not_json.json")
    out = os.path.join(args.out, "bad.md")
    r = run([args.tessera, "report", "--from", os.path.join(args.data, INPUTS[0]), bad, "-o", out])
    expected = "tessera: %s: not valid JSON (parse error at byte 54)\n" % bad
    if r.returncode != 1 or r.stderr != expected:
        fail("bad JSON: exit %d, stderr %r" % (r.returncode, r.stderr))
    if os.path.exists(out) or os.path.exists(os.path.join(args.out, "bad_charts")):
        fail("bad JSON: output was written")

    # Projections, recomputed here: pixels x ms/pixel.
    r = run([args.tessera, "project", "--ms-per-pixel", "0.43,0.22", "--usd-per-hour", "2",
             "--machines", "10", "--format", "json"])
    if r.returncode != 0:
        fail("tessera project exited %d: %s" % (r.returncode, r.stderr))
    rows = json.loads(r.stdout)
    for row, ms in zip(rows, (0.43, 0.22)):
        want = {"grid_tile_s": 1e6 * ms / 1e3, "mgrs_tile_s": 10980 * 10980 * ms / 1e3,
                "planet_s": 1593480 * 1e6 * ms / 1e3 / 10,
                "mgrs_tile_usd": 10980 * 10980 * ms / 1e3 / 3600 * 2,
                "planet_usd": 1593480 * 1e6 * ms / 1e3 / 3600 * 2}
        for key, value in want.items():
            if abs(row[key] - value) > 1e-9 * value:
                fail("project %s: %s = %r, expected %r" % (row["label"], key, row[key], value))
    if [row["mgrs_tile"] for row in rows] != ["14.4 h", "7.4 h"]:
        fail("project: MGRS tile times %r" % [row["mgrs_tile"] for row in rows])
    r = run([args.tessera, "project", "--from", os.path.join(args.data, "sweep_batch.json"),
             "--format", "csv"])
    lines = r.stdout.strip().split("\n")
    if r.returncode != 0 or len(lines) != 1 + 17:  # header + ok rows (the OOM row is left out)
        fail("project --from: exit %d, %d lines" % (r.returncode, len(lines)))
    print("ok: %d charts checked, errors and projections as expected" % len(EXPECTED))


def png_pixels(path):
    """Decodes an 8-bit RGB/RGBA, non-interlaced PNG: (width, height, channels, rows)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(path + ": not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        fail("%s: unsupported PNG (depth %d, colour %d)" % (path, depth, colour))
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, channels, rows


def check_render(args):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if not browser:
        print("skipped: no chromium on PATH")
        sys.exit(SKIP)
    _, charts = make_report(args)
    for name in sorted(EXPECTED):
        png = os.path.join(args.out, name.replace(".svg", ".png"))
        profile = tempfile.mkdtemp(prefix="tessera-chromium-")
        try:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--user-data-dir=" + profile, "--screenshot=" + png,
                            "--window-size=900,600", "file://" + os.path.join(charts, name)],
                           capture_output=True, timeout=120)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        if not os.path.exists(png) or os.path.getsize(png) < 5000:
            fail(name + ": no screenshot, or a tiny one")
        width, height, channels, rows = png_pixels(png)
        if (width, height) != (900, 600):
            fail("%s: screenshot is %dx%d" % (name, width, height))
        inked = sum(1 for row in rows for i in range(0, len(row), channels) if min(row[i:i + 3]) < 200)
        if inked < 0.005 * width * height:
            fail("%s: screenshot is blank (%d dark pixels)" % (name, inked))
        print("%s: %dx%d, %d dark pixels" % (name, width, height, inked))
    print("ok: %d charts rendered" % len(EXPECTED))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["report", "render"])
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    check_report(args) if args.mode == "report" else check_render(args)


if __name__ == "__main__":
    main()
