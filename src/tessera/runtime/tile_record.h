#pragma once
// What made a tile's outputs: `<grid>.tessera.json` beside `<grid>.npy` and `<grid>_scales.npy`.
//
// Invariant: a record present names what computed the two outputs beside it. It is removed
// before a tile's new outputs are renamed into place and written (tmp + rename) only after
// both are, so a run stopped between the two leaves outputs without a record, never outputs
// with another run's record. Outputs without a record (an older tessera, or such a stop) are
// refused like outputs of another model: `--force` recomputes them.

#include <cstdint>
#include <optional>
#include <string>

namespace tessera {

struct TileRecord {
  std::string tessera_version;
  std::string model;         // the path given
  std::string model_sha256;  // of the bytes the engines were built from
  std::string weights;       // describe_weights(): "random (seed 42), for benchmarking", ...
  std::string version;       // the model's Tessera version ("v1.0", "v1.1", "v2", ...)
  std::string engine, precision;
  int64_t output_dim = 0;  // int8 values per pixel
  int repeat = 1;
  std::string created;  // UTC, ISO 8601
};

// "<out_dir>/<grid>.tessera.json".
std::string tile_record_path(const std::string& out_dir, const std::string& grid);

// The record at `path`; nullopt when there is none. Throws Error "<path>: not a tessera tile
// record (<cause>)" when it cannot be parsed.
std::optional<TileRecord> read_tile_record(const std::string& path);

// Writes `record` at `path` (tmp + rename, fsynced), stamping `created` now.
void write_tile_record(const std::string& path, TileRecord record);

// "" when outputs recorded as `made` are what a run described by `now` computes (same model
// bytes, engine, precision, width and passes); else what differs, e.g. "model sha256
// 1a2b3c4d5e6f (this run: 9f8e7d6c5b4a)" or "precision bf16 (this run: fp32)".
std::string record_difference(const TileRecord& made, const TileRecord& now);

}  // namespace tessera
