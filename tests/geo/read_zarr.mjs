// Reads regions of arrays from a Zarr v3 store on disk with zarrita (not tessera's code):
//   node read_zarr.mjs STORE REQUESTS
// REQUESTS is a JSON list of {"array", "selection", "out"}: "array" a path inside the store
// ("utm31/embeddings"); "selection" one entry per dimension: an index, [start, stop], or null
// for all; "out" a file that gets the values as raw little-endian items. stdout gets a JSON
// list with {"shape", "dtype", "array_shape", "chunks"} for each request.
import * as zarr from "zarrita";
import { FileSystemStore } from "@zarrita/storage";
import { writeFileSync } from "node:fs";

const [store, requests] = process.argv.slice(2);
const root = zarr.root(new FileSystemStore(store));
const infos = [];
for (const { array: path, selection, out } of JSON.parse(requests)) {
  const array = await zarr.open.v3(root.resolve(path), { kind: "array" });
  const slices = selection.map((s) =>
    s === null ? null : Array.isArray(s) ? zarr.slice(s[0], s[1]) : s);
  const chunk = await zarr.get(array, slices);
  const data = chunk.data;
  writeFileSync(out, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  infos.push({ shape: chunk.shape, dtype: array.dtype, array_shape: array.shape,
               chunks: array.chunks });
}
console.log(JSON.stringify(infos));
