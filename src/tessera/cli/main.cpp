// tessera: the command-line front end. Argument handling only; the work is in the libraries.
// Exit codes: 0 ok, 1 runtime error, 2 usage error.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "tessera/cli/commands.h"
#include "tessera/cli/suggestions.h"
#include "tessera/common/error.h"
#include "tessera/common/version.h"
#include "tessera/engine/engine_spec.h"

namespace {

// "; did you mean --batch?" after an unexpected option of `command`, or "" when no known name is
// near it.
std::string suggestion_for(const CLI::ParseError& error, const CLI::App& command) {
  const std::string text = error.what();
  const size_t colon = text.find("not expected: ");
  if (colon == std::string::npos) return "";
  std::string word = text.substr(colon + 14);
  word = word.substr(0, word.find(' '));
  word = word.substr(0, word.find('='));
  if (word.rfind("--", 0) != 0) return "";
  if (const std::string known = tessera::cli::option_known_as(word); !known.empty())
    return "; tessera says " + known;
  std::vector<std::string> options;
  for (const CLI::Option* option : command.get_options()) {
    for (const std::string& name : option->get_lnames()) options.push_back("--" + name);
  }
  const std::string near = tessera::cli::closest_name(word, options);
  return near.empty() ? "" : "; did you mean " + near + "?";
}

// `tessera --version`: the release, how this binary was built, and the engines' libraries.
std::string version_text() {
  std::string text = std::string("tessera ") + tessera::kVersion +
                     "\nbuilt: " + TESSERA_BUILD_TYPE + ", " + TESSERA_COMPILER +
                     ", C++20\nengines:";
  for (const tessera::Backend& backend : tessera::engine_backends())
    text += " " + backend.name + " " + backend.version() + ",";
  text.pop_back();
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera: Tessera geospatial foundation model inference at planet scale"};
  app.set_version_flag("--version", version_text);
  app.require_subcommand(1);
  app.fallthrough();
  tessera::cli::add_make_model_command(app);
  tessera::cli::add_import_command(app);
  tessera::cli::add_convert_model_command(app);
  tessera::cli::add_bench_command(app);
  tessera::cli::add_bench_worker_command(app);
  tessera::cli::add_project_command(app);
  tessera::cli::add_report_command(app);
  tessera::cli::add_compare_command(app);
  tessera::cli::add_topo_command(app);
  tessera::cli::add_synth_command(app);
  tessera::cli::add_infer_command(app);
  tessera::cli::add_export_command(app);
  tessera::cli::add_run_model_command(app);
  tessera::cli::add_tune_command(app);
  // A bad TESSERA_ORT_LOG or TESSERA_CPU_MEM_PATTERN is a usage error of every command, found
  // before its work starts (after
  // --help and --version, which need no ONNX Runtime).
  app.parse_complete_callback([] { tessera::check_engine_environment(); });
  // A first word that is neither an option nor a command would otherwise read as a missing one.
  const auto is_command = [&](const char* word) {
    return !app.get_subcommands([&](CLI::App* sub) { return sub->check_name(word); }).empty();
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::vector<std::string> commands;
    for (const CLI::App* sub :
         app.get_subcommands([](CLI::App* sub) { return !sub->get_group().empty(); }))
      commands.push_back(sub->get_name());
    const std::string near = tessera::cli::closest_name(argv[1], commands);
    std::fprintf(stderr, "tessera: unknown command '%s' (%ssee tessera --help)\n", argv[1],
                 near.empty() ? "" : ("did you mean '" + near + "'? ").c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Every malformed command line is a usage error, in one line.
    std::string command = "tessera";
    const CLI::App* used = &app;
    for (const CLI::App* sub : app.get_subcommands()) {
      command += " " + sub->get_name();
      used = sub;
    }
    std::fprintf(stderr, "tessera: %s%s (see %s --help)\n", e.what(),
                 suggestion_for(e, *used).c_str(), command.c_str());
    return 2;
  } catch (const tessera::UsageError& e) {
    std::fprintf(stderr, "tessera: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "tessera: out of memory: this run needs more than the machine can give "
                 "(a smaller batch or tile needs less)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: %s\n", e.what());
    return 1;
  }
  return 0;
}
