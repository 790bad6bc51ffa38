#include "tessera/io/mapped_files.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace tessera {
namespace {

constexpr int kSlots = 1024;             // mappings alive at once: 9 per tile (7 inputs, 2 outputs)
constexpr std::size_t kPathBytes = 512;  // longer paths are cut (the message stays one line)

struct Slot {
  std::atomic<bool> taken{false};
  std::atomic<uintptr_t> begin{0}, end{0};  // published last; 0, 0 while (un)registering
  MappedUse use = MappedUse::kInput;
  char path[kPathBytes] = {};
};

Slot g_slots[kSlots];
struct sigaction g_previous {};

void write_text(const char* text) {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

void on_sigbus(int signal, siginfo_t* info, void* context) {
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& slot : g_slots) {
    const uintptr_t begin = slot.begin.load(std::memory_order_acquire);
    if (begin == 0 || address < begin || address >= slot.end.load(std::memory_order_acquire))
      continue;
    write_text("tessera: ");
    write_text(slot.path);
    write_text(slot.use == MappedUse::kInput
                   ? ": the file was truncated while tessera was reading it\n"
                   : ": cannot write the mapped output: the file was truncated or the disk is "
                     "full\n");
    ::_exit(1);
  }
  // Not one of ours: hand the fault to whoever had it before.
  ::sigaction(SIGBUS, &g_previous, nullptr);
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) g_previous.sa_sigaction(signal, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(signal);
  }
  // With the default action the faulting access repeats on return and ends the process.
}

void install_handler() {
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO;
  ::sigaction(SIGBUS, &action, &g_previous);
}

}  // namespace

int register_mapping(const void* begin, std::size_t bytes, const std::string& path, MappedUse use) {
  static std::once_flag installed;
  std::call_once(installed, install_handler);
  if (begin == nullptr || bytes == 0) return -1;
  for (int i = 0; i < kSlots; ++i) {
    Slot& slot = g_slots[i];
    bool free = false;
    if (!slot.taken.compare_exchange_strong(free, true)) continue;
    slot.use = use;
    const std::size_t n = std::min(path.size(), kPathBytes - 1);
    std::memcpy(slot.path, path.data(), n);
    slot.path[n] = '\0';
    const auto first = reinterpret_cast<uintptr_t>(begin);
    slot.end.store(first + bytes, std::memory_order_release);
    slot.begin.store(first, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_mapping(int handle) noexcept {
  if (handle < 0 || handle >= kSlots) return;
  Slot& slot = g_slots[handle];
  slot.begin.store(0, std::memory_order_release);
  slot.end.store(0, std::memory_order_release);
  slot.taken.store(false, std::memory_order_release);
}

}  // namespace tessera
