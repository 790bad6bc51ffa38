#pragma once
// A clear last word when a mapped file changes under a run. Touching a page of a mapping whose
// file was truncated (by another program, while tessera reads it) raises SIGBUS, which would
// kill the process with no message at all. Every mapping of a file (NpyArray, NpyWriter) is
// registered here with its path; a SIGBUS handler, installed on the first registration, looks
// up the faulting address (si_addr) and, when it lies in a registered mapping, writes one line
//   tessera: <path>: the file was truncated while tessera was reading it
// (or, for an output, "... cannot write the mapped output: the file was truncated or the disk
// is full") to stderr and ends the process with _exit(1). A SIGBUS anywhere else gets the
// action that was there before (a crash stays a crash).
//
// Why a registry and not sigsetjmp around the reads: mapped data is read in many places and
// threads (scans, preparers of every worker); the registry needs no change at any of them.
//
// Invariants: the handler only reads fixed-size slots through atomics and calls only
// async-signal-safe functions (write, _exit, sigaction). A slot's path stays valid while its
// range is published; a region is unregistered before it is unmapped.

#include <cstddef>
#include <string>

namespace tessera {

enum class MappedUse { kInput, kOutput };

// Registers [begin, begin + bytes) as a mapping of `path`. Returns a handle for
// unregister_mapping, or -1 when every slot is taken (the mapping then works as before, without
// the message).
int register_mapping(const void* begin, std::size_t bytes, const std::string& path, MappedUse use);
// Forgets a mapping (call before munmap). -1 is ignored.
void unregister_mapping(int handle) noexcept;

}  // namespace tessera
