#pragma once
// The `tessera infer` job: a list of tiles, run by this process alone or over the ranks of an
// MPI job (dispatch_tiles), one line per tile and an optional JSON summary.
//
// Order of a job, the same on every rank: rank 0 reads the tile list (--tiles) and shares it;
// tiles listed again however spelt ("t", "./t", "t/") are dropped with one warning each; rank 0
// checks every tile and the summary's location before any tile runs (a failure there stops every
// rank at once); ranks bound to the same CPUs of a host split them; the model, the caller's
// defaults (fill_defaults), the engine (the default one when none is named) and the plan follow,
// in that order, since the plan must see this
// rank's CPUs. Rank 0 alone writes the summary, whole or not at all (AtomicFile).

#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tessera/geo/geo_outputs.h"
#include "tessera/runtime/tile_runner.h"

namespace tessera {

struct InferJobOptions {
  std::vector<std::string> tiles;  // tile directories, as listed
  std::string tile_list;           // a file listing tiles, or a directory of tiles ("": none)
  // What each tile runs with; infer.out_dir is required, infer.model_path "" is the built-in
  // model (made if missing).
  InferOptions infer;
  // The geospatial formats made from each tile's .npy outputs (--format, --year); its out_dir
  // is infer.out_dir, its dataset version the tile record's.
  GeoRequest geo;
  std::string layout = "core";
  std::string membind = "local";
  // The JSON summary's path ("": none). It never replaces an input or another file of the run,
  // and replaces an existing file only with infer.force (--force).
  std::string summary;
  // Other files the job reads (the CLI's --profile): the summary never replaces one.
  std::vector<std::string> inputs;
  // Called on every rank once its CPUs and the model are settled, before the plan: fills the
  // defaults the user did not give (the CLI's --profile). May be empty.
  std::function<void(InferJobOptions&)> fill_defaults;
  // Why infer.engine is the engine it is, for the job's engine line and the summary's
  // "engine_reason": "--engine" (the caller named it), "from profile <path>" (fill_defaults took
  // it), or, when infer.engine is "" once fill_defaults has run, the job chooses the default
  // for the model and devices (choose_default_engine) and its reason.
  std::string engine_reason = "--engine";
  // The summary's "profile": what fill_defaults took from a profile (null: no such key).
  nlohmann::json summary_profile;
  // Makes one tile's progress callback from its label ("[rank 1] [3/120] grid") and whether it
  // may redraw one line in place. May be empty (no progress).
  std::function<ProgressCallback(const std::string& label, bool in_place)> progress;
  // `err` is a terminal: progress may redraw its line in place (never under MPI), and the line
  // is cleared after each tile.
  bool terminal = false;
};

// Runs the job. Rank 0's first line on `err` names the engine and why ("tessera: engine: native
// fp32 (default: fastest fp32 engine here)"). Per-tile lines (and under MPI the rank table) go to
// `out`, warnings to `err`. Throws UsageError for an empty tile list, tiles that would write the
// same outputs, or a layout that does not fit; Error for a tile's own errors, for a --summary path
// that would replace an input, another file of the run or (without --force) an existing file, and,
// once every other tile has run and the summary is written, for tiles skipped because another run
// held their lock ("N of M tiles skipped: another tessera run is writing them ...").
void run_infer_job(const InferJobOptions& options, std::ostream& out, std::ostream& err);

}  // namespace tessera
