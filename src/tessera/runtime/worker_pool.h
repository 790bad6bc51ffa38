#pragma once
// Pinned workers: one OS thread per worker of a placement plan. Each thread binds itself to
// its worker's cpuset and memory policy *before* running the body, so every engine, weight
// copy and buffer the body creates is first-touched on the worker's own NUMA node(s).

#include <functional>

#include "tessera/topology/placement.h"

namespace tessera {

// Thread placement inside a worker: its own thread (the one running body, which calls the
// engine) is pinned to cpus[0]; an engine's helper threads belong on cpus[1..threads-1]
// (ort_thread_affinities), so no two threads of a worker share a core.
//
// Runs body(worker) for every worker of `plan` concurrently and waits for all of them.
// If bodies throw, the first exception (by time) is rethrown after every thread has ended.
// With bind = false the threads are left where the OS puts them (for comparison runs). The
// bodies start once every thread exists; when one cannot be started, none runs and Error
// "cannot start a thread: ..." is thrown.
void run_pinned_workers(const Plan& plan, const std::function<void(const WorkerPlan&)>& body,
                        bool bind = true);

}  // namespace tessera
