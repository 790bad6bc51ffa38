#pragma once
// One meaning per flag. In every command -o/--output is the PATH of the command's output and
// -b/--batch its batch size (a comma-separated list where the command sweeps); where a command
// prints a table, --format md|csv|json says how; in infer and export, which write files of
// embeddings, --format names their formats (npy, geotiff, zarr: docs/GEO.md).
//
// Old spellings keep working for now, each with one line on stderr ("tessera bench: '-o json' is
// deprecated, use '--format json'"). The rule for -o: only bench, project and topo ever took a
// table format through -o/--output, so only there is a value of md, markdown, csv, json or jsonl
// read as the old meaning, the format (an unknown one is the same usage error as before); every
// other value, and every value in the other commands, is a path. A file with such a name is
// written with a directory in front: `-o ./json`.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "tessera/common/table.h"

namespace tessera::cli {

// Prints "tessera <command>: '<old>' is deprecated, use '<replacement>'" on stderr.
void say_deprecated(const std::string& command, const std::string& old,
                    const std::string& replacement);

// After parsing, for an option renamed from `old` (still accepted, hidden) to `current`: a usage
// error "<command>: give <what> once, with <current's names>" when both were given, the
// deprecation line when the old one was.
void check_renamed_option(const std::string& command, const CLI::Option& current,
                          const CLI::Option& old, const std::string& what);

// The two options of a command that prints a table: where it goes and how it looks.
struct TableOutput {
  std::string path;    // -o/--output; empty: stdout
  std::string format;  // --format; empty: the path's extension (.md, .csv, .json), else md
  bool force = false;  // --force: an existing file at `path` may be replaced
};

// Declares -o/--output, --format and (unless `with_force` is false: a command whose own --force
// sets out.force) --force on `cmd`; `formats` is the help text's list ("md or json").
void add_table_output_options(CLI::App& cmd, TableOutput& out, const std::string& formats,
                              bool with_force = true);

// After parsing: the table's format. A path that is an old format name (the rule above) becomes
// the format, with the deprecation line naming `command`, and out.path is cleared; with
// --format given as well that is a usage error. Then, unless the table goes to stdout, checks
// (before any work) that out.path can be written, is none of `inputs` (not even with --force),
// and is not an existing file unless out.force (check_new_output).
OutputFormat resolve_table_output(const std::string& command, TableOutput& out,
                                  const std::vector<std::string>& inputs);

// Writes `text` to out.path, whole or not at all (AtomicFile), or to stdout without a path.
void write_table_output(const TableOutput& out, const std::string& text);

}  // namespace tessera::cli
