#include "tessera/cluster/mpi_job.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "tessera/common/error.h"

#ifdef TESSERA_HAVE_MPI
#include <mpi.h>
#endif

namespace tessera {
namespace {

std::string local_host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

#ifndef TESSERA_HAVE_MPI
// The job size the launcher announced, or 0 when it did not say.
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return 0;
}
#endif

}  // namespace

bool started_by_mpi_launcher() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

#ifdef TESSERA_HAVE_MPI

bool built_with_mpi() {
  return true;
}

MpiJob::MpiJob() : exceptions_at_start_(std::uncaught_exceptions()), host_(local_host_name()) {
  if (!started_by_mpi_launcher()) return;
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw Error("MPI_Init_thread failed: cannot join the MPI job");
  active_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  if (provided < MPI_THREAD_FUNNELED)
    abort("the MPI library does not provide MPI_THREAD_FUNNELED, which tessera needs");
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  if (MPI_Get_processor_name(name, &length) == MPI_SUCCESS) host_.assign(name, length);
}

MpiJob::~MpiJob() {
  // On an exception the process exits without finalising; the launcher then stops the job.
  if (active_ && std::uncaught_exceptions() == exceptions_at_start_) MPI_Finalize();
}

void MpiJob::abort(const std::string& message) const {
  std::fprintf(stderr, "tessera: [rank %d] %s\n", rank_, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (active_) MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

#else

bool built_with_mpi() {
  return false;
}

MpiJob::MpiJob() : exceptions_at_start_(std::uncaught_exceptions()), host_(local_host_name()) {
  const int size = launcher_size();
  if (size > 1)
    throw Error("this tessera was built without MPI (-DTESSERA_MPI=OFF) but started as one of " +
                std::to_string(size) + " MPI processes; rebuild with MPI or run it without mpirun");
}

MpiJob::~MpiJob() = default;

void MpiJob::abort(const std::string& message) const {
  std::fprintf(stderr, "tessera: [rank %d] %s\n", rank_, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(1);
}

#endif

}  // namespace tessera
