#include "tessera/runtime/device_list.h"

#include <algorithm>

#include "tessera/common/error.h"

namespace tessera {

DeviceList parse_device_list(const std::string& text) {
  DeviceList list;
  std::vector<std::string> seen;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string entry = text.substr(begin, end - begin);
    begin = end + 1;
    if (entry.empty()) throw UsageError("empty entry in device list '" + text + "'");
    if (std::find(seen.begin(), seen.end(), entry) != seen.end()) {
      throw UsageError("device " + entry + " is listed twice in '" + text + "'");
    }
    seen.push_back(entry);
    if (entry == "cpu") {
      list.cpu = true;
    } else if (entry == "cpu+stream") {
      list.streams.push_back({entry, Device{}});
    } else {
      list.streams.push_back({entry, parse_device(entry)});  // UsageError for anything else
    }
  }
  return list;
}

bool DeviceList::any_cuda() const {
  return std::any_of(streams.begin(), streams.end(),
                     [](const StreamDevice& stream) { return !stream.device.on_cpu(); });
}

}  // namespace tessera
