#include "tessera/infer/mpi_job.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>

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
// The job size the launcher announced, or 0 when it did not say. PMIx (srun --mpi=pmix) names
// no size: Slurm's task count of the step stands in, and a rank above 0 means several.
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  if (const char* rank = std::getenv("PMIX_RANK")) {
    const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
    const int size = tasks ? std::atoi(tasks) : 0;
    return std::max(size, std::atoi(rank) > 0 ? 2 : 0);
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

MpiJob::HostShare MpiJob::share_on_host(const std::string& key) const {
  if (!active_) return {};
  MPI_Comm host;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &host);
  int ranks = 0, me = 0;
  MPI_Comm_size(host, &ranks);
  MPI_Comm_rank(host, &me);
  // Every rank's key: their lengths first, then the bytes side by side.
  const int length = static_cast<int>(key.size());
  std::vector<int> lengths(static_cast<size_t>(ranks)), offsets(static_cast<size_t>(ranks), 0);
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, host);
  for (int i = 1; i < ranks; ++i) offsets[i] = offsets[i - 1] + lengths[i - 1];
  std::string keys(static_cast<size_t>(offsets.back() + lengths.back()), '\0');
  MPI_Allgatherv(key.data(), length, MPI_CHAR, keys.data(), lengths.data(), offsets.data(),
                 MPI_CHAR, host);
  MPI_Comm_free(&host);
  HostShare share{0, 0};
  for (int i = 0; i < ranks; ++i) {
    if (keys.compare(static_cast<size_t>(offsets[i]), static_cast<size_t>(lengths[i]), key) != 0)
      continue;
    if (i < me) ++share.index;
    ++share.count;
  }
  return share;
}

std::vector<std::string> MpiJob::share_from_rank0(const std::vector<std::string>& strings) const {
  if (!active_) return strings;
  // Rank 0's strings, each ended by a NUL, as one buffer: its length first, then its bytes.
  std::string buffer;
  if (rank_ == 0) {
    for (const std::string& s : strings) buffer.append(s).push_back('\0');
  }
  long long length = static_cast<long long>(buffer.size());
  MPI_Bcast(&length, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  if (length > std::numeric_limits<int>::max()) abort("the tile list is too long to share");
  buffer.resize(static_cast<size_t>(length));
  MPI_Bcast(buffer.data(), static_cast<int>(length), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> shared;
  for (size_t begin = 0; begin < buffer.size();) {
    const size_t end = buffer.find('\0', begin);
    shared.push_back(buffer.substr(begin, end - begin));
    begin = end + 1;
  }
  return shared;
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

std::vector<std::string> MpiJob::share_from_rank0(const std::vector<std::string>& strings) const {
  return strings;
}

MpiJob::HostShare MpiJob::share_on_host(const std::string&) const {
  return {};
}

void MpiJob::abort(const std::string& message) const {
  std::fprintf(stderr, "tessera: [rank %d] %s\n", rank_, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(1);
}

#endif

}  // namespace tessera
