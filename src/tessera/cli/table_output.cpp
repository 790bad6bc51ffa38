#include "tessera/cli/table_output.h"

#include <filesystem>
#include <iostream>

#include "tessera/cli/output_checks.h"
#include "tessera/common/error.h"
#include "tessera/io/atomic_file.h"

namespace tessera::cli {

void say_deprecated(const std::string& command, const std::string& old,
                    const std::string& replacement) {
  std::cerr << "tessera " << command << ": '" << old << "' is deprecated, use '" << replacement
            << "'\n";
}

namespace {

// "-o/--output": every name of an option, hidden or not.
std::string names_of(const CLI::Option& option) {
  std::string out;
  for (const auto& s : option.get_snames()) out += (out.empty() ? "-" : "/-") + s;
  for (const auto& l : option.get_lnames()) out += (out.empty() ? "--" : "/--") + l;
  return out;
}

}  // namespace

void check_renamed_option(const std::string& command, const CLI::Option& current,
                          const CLI::Option& old, const std::string& what) {
  if (current.count() > 0 && old.count() > 0)
    throw UsageError(command + ": give " + what + " once, with " + names_of(current));
  if (old.count() > 0)
    say_deprecated(command, "--" + old.get_lnames().front(), "--" + current.get_lnames().front());
}

void add_table_output_options(CLI::App& cmd, TableOutput& out, const std::string& formats,
                              bool with_force) {
  cmd.add_option("-o,--output", out.path, "Write the output to this file (default: stdout)");
  if (with_force) cmd.add_flag("--force", out.force, "Replace an existing -o file");
  cmd.add_option("--format", out.format,
                 "Output format: " + formats + " (default: the -o file's extension, else md)");
}

OutputFormat resolve_table_output(const std::string& command, TableOutput& out,
                                  const std::vector<std::string>& inputs) {
  const std::string& value = out.path;
  // JSON lines were never written: an old '-o jsonl' is one clear error, not a deprecation line
  // followed by an unknown format.
  if (value == "jsonl" || out.format == "jsonl") {
    throw UsageError(command +
                     ": jsonl is not a format of tessera; use --format json (one JSON document "
                     "with every row)");
  }
  if (value == "md" || value == "markdown" || value == "csv" || value == "json") {
    if (!out.format.empty()) {
      throw UsageError(command + ": '-o " + value + "' (a format, deprecated) and '--format " +
                       out.format + "' given together; use --format only");
    }
    say_deprecated(command, "-o " + value, "--format " + value);
    out.format = value;
    out.path.clear();
  }
  std::string format = out.format;
  if (format.empty()) {
    const std::string extension = std::filesystem::path(out.path).extension().string();
    format = extension == ".csv" ? "csv" : extension == ".json" ? "json" : "md";
  }
  const OutputFormat parsed = parse_output_format(format);
  if (!out.path.empty()) check_new_output(out.path, out.force, inputs);
  return parsed;
}

void write_table_output(const TableOutput& out, const std::string& text) {
  if (out.path.empty()) {
    std::cout << text << std::flush;
    return;
  }
  AtomicFile file(out.path);
  file.write(text.data(), text.size());
  file.commit();
}

}  // namespace tessera::cli
