#pragma once
// MpiJob: this process's place in an MPI job (mpirun / srun), or a job of one.
//
// MPI is initialised only when the process was started by an MPI launcher (the environment
// holds OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), so a plain `tessera infer` never touches
// MPI and needs no mpirun. MPI runs at MPI_THREAD_FUNNELED: only the thread that built the
// MpiJob calls MPI; tile workers are other threads that never do.
//
// Invariants: 0 <= rank() < size(); active() is false exactly when size() == 1 without MPI
// initialised. The destructor finalises MPI on a normal exit. Leaving by an exception skips
// MPI_Finalize: the process then exits non-zero without finalising and the launcher stops the
// whole job (MPI semantics), so no rank waits forever on one that failed.
//
// Built without MPI (-DTESSERA_MPI=OFF), a job of one still works; started by a launcher as
// one of several processes, the constructor throws rather than let every process run every tile.

#include <string>
#include <vector>

namespace tessera {

class MpiJob {
 public:
  MpiJob();
  ~MpiJob();
  MpiJob(const MpiJob&) = delete;
  MpiJob& operator=(const MpiJob&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool active() const { return active_; }
  // The processor name MPI reports (or gethostname() without MPI).
  const std::string& host() const { return host_; }

  // Among the ranks on this host (collective), those that pass the same `key`: this rank's
  // position among them (in rank order) and how many they are. {0, 1} without an active job.
  struct HostShare {
    int index = 0, count = 1;
  };
  HostShare share_on_host(const std::string& key) const;

  // Rank 0's `strings` on every rank (collective: every rank calls it; the others' arguments
  // are ignored). Without an active job, `strings` itself.
  std::vector<std::string> share_from_rank0(const std::vector<std::string>& strings) const;

  // Prints "tessera: [rank r] <message>" on stderr and stops every rank of the job with exit
  // code 1 (MPI_Abort). Without an active job, prints the same line and exits 1.
  [[noreturn]] void abort(const std::string& message) const;

 private:
  int rank_ = 0;
  int size_ = 1;
  bool active_ = false;
  int exceptions_at_start_ = 0;
  std::string host_;
};

// True when the environment says an MPI launcher started this process.
bool started_by_mpi_launcher();

// True when this binary was built with MPI support.
bool built_with_mpi();

}  // namespace tessera
