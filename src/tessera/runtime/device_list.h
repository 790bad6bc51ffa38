#pragma once
// The devices of `tessera infer --device`, comma separated:
//   cpu             the CPU placement plan's workers (pinned, one engine each)
//   cuda:N[+io|+graph]  one streaming worker on GPU N (ort_cuda.h names the paths)
//   cpu+stream      one streaming worker on a 1-thread CPU engine: the GPU worker's pipeline
//                   (chunk claiming, helper threads, OOM halving) on machines without a GPU
// Every worker of every device pulls batch numbers from one shared BatchCounter.
//
// Invariant of a parsed list: at most one "cpu", no device twice, at least one entry.

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/engine/choice/engine_choice.h"

namespace tessera {

// A streaming worker: the entry as given (journal keys and summaries print it) and the device
// its engine runs on (the CPU for cpu+stream).
struct StreamDevice {
  std::string entry;
  Device device;
};

struct DeviceList {
  bool cpu = false;                   // run the CPU plan's workers
  std::vector<StreamDevice> streams;  // streaming workers, in the order given

  // True when a streaming worker runs on a CUDA device.
  bool any_cuda() const;
};

// Throws UsageError naming the bad entry.
DeviceList parse_device_list(const std::string& text);

}  // namespace tessera
