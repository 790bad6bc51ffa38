#pragma once
// The instruction-set features of this machine's CPU that decide which precisions run natively:
// AVX-512 (fp32 kernels), AVX512_VNNI (int8), AVX512_BF16 (bf16), AMX (bf16 and int8 tiles).

#include <string>
#include <vector>

namespace tessera {

// The features of `known_cpu_features()` the kernel lists for this CPU (/proc/cpuinfo "flags"),
// in that order, named as Intel and AMD document them ("AVX512_BF16"). Empty when the flags
// cannot be read.
std::vector<std::string> this_cpu_features();

// Of `flags` (a /proc/cpuinfo "flags" line's words), the known features present, in order.
std::vector<std::string> features_of_flags(const std::string& flags);

}  // namespace tessera
