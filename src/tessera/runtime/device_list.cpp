#include "tessera/runtime/device_list.h"

#include <algorithm>

#include "tessera/common/error.h"
#include "tessera/engine/engine_spec.h"

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
      list.streams.push_back(entry);
    } else {
      parse_engine_spec("ort", entry);  // throws UsageError for anything else
      list.streams.push_back(entry);
    }
  }
  return list;
}

std::string stream_engine_device(const std::string& stream) {
  return stream == "cpu+stream" ? "cpu" : stream;
}

bool DeviceList::any_cuda() const {
  return std::any_of(streams.begin(), streams.end(), [](const std::string& stream) {
    return !parse_engine_spec("ort", stream_engine_device(stream)).on_cpu();
  });
}

}  // namespace tessera
