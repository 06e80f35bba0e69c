// A memory pool for PyTorch's large CPU tensors; see attnas/ops/cpu_pool.py for why and how.
//
// Blocks of at least `min_block` bytes are mapped with mmap and, when freed, kept with their
// pages (already faulted in).  A request is served from the best-fitting free range (no system
// call); when no free range is large enough, a new address range is filled by moving the free
// ranges' pages into it with mremap (moving pages is far cheaper than having the kernel fault
// and zero new ones), and only what is still missing is mapped fresh.  New pages are therefore
// taken only when the in-use total exceeds every free byte: the pool never holds more than the
// largest in-use total it has seen.  Smaller tensors go to the allocator that was installed.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

namespace {
// the kernel's page (4 KiB, 16 KiB or 64 KiB): blocks, and so every mremap, are whole pages
const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));

std::mutex mu;
std::map<char*, size_t> free_at;        // free ranges: start -> length, neighbours merged
std::multimap<size_t, char*> free_len;  // the same ranges by length (best fit, largest)
// Every address at which one of the pool's kernel mappings may begin.  mremap moves a range
// inside one mapping only, so a move is cut at these points; a superset is harmless.
// A live block's start is one too once the free bytes before it are unmapped (release_locked).
std::set<char*> cuts;
std::unordered_map<void*, size_t> live;  // handed-out block -> length
size_t min_block = 1 << 20, max_cuts = 16384;
// bytes in use, bytes held free, the in-use peak; allocations served by one free range, by
// moving pages; bytes mapped fresh, bytes moved; times every free byte went back to the system;
// mremap calls that failed (the rest of that block is mapped fresh: a move slower, not wrong)
uint64_t in_use = 0, cached = 0, peak = 0, n_fit = 0, n_moved = 0, fresh = 0, moved = 0, n_release = 0,
         n_failed = 0;
c10::Allocator* system_alloc = nullptr;
c10::DeleterFnPtr system_deleter = nullptr;
// install() calls not yet matched by an uninstall(); the pool is PyTorch's allocator while > 0
uint64_t holders = 0;
// the priority the pool was set with: the registry's own before (see attnas_pool_install)
uint8_t priority = 0;

std::pair<char*, size_t> take(std::map<char*, size_t>::iterator it) {
  auto r = *it;
  auto same = free_len.equal_range(r.second);
  for (auto j = same.first; j != same.second; ++j)
    if (j->second == r.first) {
      free_len.erase(j);
      break;
    }
  free_at.erase(it);
  cached -= r.second;
  return r;
}

void give(char* addr, size_t len) {  // a free range, merged with its free neighbours
  auto next = free_at.lower_bound(addr);
  if (next != free_at.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == addr) {
      auto r = take(prev);
      addr = r.first;
      len += r.second;
    }
  }
  next = free_at.lower_bound(addr);
  if (next != free_at.end() && addr + len == next->first) len += take(next).second;
  free_at.emplace(addr, len);
  free_len.emplace(len, addr);
  cached += len;
}

void forget_cuts(char* a, char* b) {  // [a, b) is no longer mapped; b may now begin a mapping
  cuts.erase(cuts.lower_bound(a), cuts.lower_bound(b));
  cuts.insert(b);
}

// one mremap per mapping the range crosses; returns the bytes moved (len unless a call failed)
size_t move_pages(char* src, size_t len, char* dst) {
  char* end = src + len;
  for (char* s = src; s < end;) {
    auto c = cuts.upper_bound(s);
    char* e = (c == cuts.end() || *c > end) ? end : *c;
    if (mremap(s, e - s, e - s, MREMAP_MAYMOVE | MREMAP_FIXED, dst + (s - src)) == MAP_FAILED) {
      ++n_failed;  // seen in the stats: a missing cut would otherwise only make moves slower
      return s - src;
    }
    cuts.insert(dst + (s - src));
    s = e;
  }
  return len;
}

void* allocate_locked(size_t n) {  // n: a multiple of the page
  char* out;
  auto fit = free_len.lower_bound(n);
  if (fit != free_len.end()) {
    auto r = take(free_at.find(fit->second));
    if (r.second > n) give(r.first + n, r.second - n);
    out = r.first;
    ++n_fit;
  } else {
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    const bool reuse = !free_at.empty();  // reserve the range, then move free pages into it
    out = static_cast<char*>(mmap(nullptr, n, reuse ? PROT_NONE : PROT_READ | PROT_WRITE,
                                  reuse ? flags | MAP_NORESERVE : flags, -1, 0));
    if (out == MAP_FAILED) return nullptr;
    cuts.insert(out);
    cuts.insert(out + n);
    size_t off = 0;
    while (reuse && off < n && !free_len.empty()) {
      auto r = take(free_at.find(std::prev(free_len.end())->second));  // the largest
      size_t k = r.second < n - off ? r.second : n - off;
      size_t done = move_pages(r.first, k, out + off);
      if (done) forget_cuts(r.first, r.first + done);  // the moved part now belongs to the block
      if (r.second > done) give(r.first + done, r.second - done);
      off += done;
      moved += done;
      if (done < k) break;  // not expected: a failed mremap; the rest is mapped fresh below
    }
    if (reuse) {
      if (off < n && mmap(out + off, n - off, PROT_READ | PROT_WRITE, flags | MAP_FIXED, -1, 0) == MAP_FAILED) {
        if (off) give(out, off);
        munmap(out + off, n - off);
        forget_cuts(out + off, out + n);
        return nullptr;
      }
      cuts.insert(out + off);
      ++n_moved;
    }
    fresh += n - off;
  }
  live.emplace(out, n);
  in_use += n;
  if (in_use > peak) peak = in_use;
  return out;
}

void release_locked() {
  if (!free_at.empty()) ++n_release;
  for (auto& r : free_at) munmap(r.first, r.second);
  free_at.clear();
  free_len.clear();
  cached = 0;
  // Only live blocks are left mapped: the cuts inside them still matter, and each block's start
  // is one now (a block cut out of a free range began inside that range's mapping, whose part
  // before it is gone), so the cuts stay a superset of the mappings' starts and "mappings" an
  // upper bound on their number.
  std::map<char*, char*> blocks;
  for (auto& b : live) blocks.emplace(static_cast<char*>(b.first), static_cast<char*>(b.first) + b.second);
  for (auto c = cuts.begin(); c != cuts.end();) {
    auto b = blocks.upper_bound(*c);
    bool inside = b != blocks.begin() && *c < std::prev(b)->second;
    c = inside ? std::next(c) : cuts.erase(c);
  }
  for (auto& b : blocks) cuts.insert(b.first);
}

void deleter(void* ptr) {
  {
    std::lock_guard<std::mutex> g(mu);
    auto it = live.find(ptr);
    if (it != live.end()) {
      in_use -= it->second;
      give(static_cast<char*>(ptr), it->second);
      live.erase(it);
      // uninstalled, or so many mappings that the kernel's limit comes near: free bytes go back
      if (!holders || cuts.size() > max_cuts) release_locked();
      return;
    }
  }
  system_deleter(ptr);  // a small tensor
}

struct PoolAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes >= min_block) {
      size_t n = (nbytes + page - 1) / page * page;
      void* p;
      {
        std::lock_guard<std::mutex> g(mu);
        p = allocate_locked(n);
      }
      if (p) return {p, p, &deleter, c10::Device(c10::DeviceType::CPU)};
    }
    c10::DataPtr d = system_alloc->allocate(nbytes);
    void* p = d.get();
    if (d.get_context() != p || d.get_deleter() != system_deleter) return d;
    d.release_context();  // one deleter for every block (raw_deleter's contract)
    return {p, p, &deleter, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &deleter; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};
PoolAllocator pool;

void lock_for_fork() { mu.lock(); }  // a forked child gets a consistent copy of the pool
void unlock_after_fork() { mu.unlock(); }
}  // namespace

extern "C" {
// Take a hold on the pool as PyTorch's CPU allocator for tensors of min_bytes and more; free
// bytes go back to the system whenever the pool's mappings pass max_mappings.  Holds are
// counted: the first installs the pool (with its limits; later ones keep them), and the pool
// stays until every hold is dropped by attnas_pool_uninstall.  1: this call installed it; 0: it
// already was, one more hold; -1: no hold, the current allocator has no raw deleter to delegate
// small tensors to.
int attnas_pool_install(size_t min_bytes, size_t max_mappings) {
  std::lock_guard<std::mutex> g(mu);
  if (holders) {
    ++holders;
    return 0;
  }
  c10::Allocator* current = c10::GetCPUAllocator();
  if (current != &pool && current->raw_deleter() == nullptr) return -1;
  static const int atfork = pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
  (void)atfork;
  min_block = min_bytes < page ? page : min_bytes;
  max_cuts = max_mappings;
  if (current != &pool) {  // else it still is (someone set it back): keep what it delegates to
    system_alloc = current;
    system_deleter = current->raw_deleter();
    // SetCPUAllocator ignores a priority below the registry's and offers no way to lower it
    // again, so the pool takes the lowest one that works -- the registry's own -- and
    // uninstall, setting the previous allocator back with it, leaves the priority as it was
    // (a fixed high one would make every later default-priority SetCPUAllocator a no-op).
    for (int p = 0; p <= 255 && c10::GetCPUAllocator() != &pool; ++p) {
      priority = static_cast<uint8_t>(p);
      c10::SetCPUAllocator(&pool, priority);
    }
  }
  holders = 1;
  return 1;
}

// Drop one hold; the last one puts the previous allocator back (unless another has replaced the
// pool since) and unmaps the free bytes; pooled tensors still alive are unmapped when they are
// freed.  1: uninstalled; 0: other holds remain; -1: there was no hold.
int attnas_pool_uninstall() {
  std::lock_guard<std::mutex> g(mu);
  if (!holders) return -1;
  if (--holders) return 0;
  if (c10::GetCPUAllocator() == &pool) c10::SetCPUAllocator(system_alloc, priority);
  release_locked();
  return 1;
}

// Unmap every free byte (the next large tensors fault their pages in again).
void attnas_pool_release() {
  std::lock_guard<std::mutex> g(mu);
  release_locked();
}

// The in-use peak restarts from the in-use total.
void attnas_pool_reset_peak() {
  std::lock_guard<std::mutex> g(mu);
  peak = in_use;
}

// The first n of: in_use, cached, peak, n_fit, n_moved, fresh, moved, n_release, mappings (the
// cuts: an upper bound on the kernel mappings holding the pool's memory), installed, holders,
// failed moves, the page size.
void attnas_pool_stats(uint64_t* out, size_t n) {
  std::lock_guard<std::mutex> g(mu);
  const uint64_t v[] = {in_use, cached, peak, n_fit, n_moved, fresh, moved, n_release, cuts.size(),
                        holders > 0, holders, n_failed, page};
  for (size_t i = 0; i < n && i < sizeof(v) / sizeof(v[0]); ++i) out[i] = v[i];
}

// A check of the bookkeeping (for tests): how many kernel mappings holding the pool's memory (as
// /proc/self/maps lists them) have their first byte of it at an address that is not a cut --
// where a move could cross a mapping boundary, which mremap refuses (Linux < 6.17), and which
// "mappings" would not count.  0 unless the cuts slipped; -1: the maps could not be read.
long attnas_pool_missing_cuts() {
  std::lock_guard<std::mutex> g(mu);
  std::map<char*, char*> held;  // live blocks and free ranges: start -> end
  for (auto& b : live) held.emplace(static_cast<char*>(b.first), static_cast<char*>(b.first) + b.second);
  for (auto& r : free_at) held.emplace(r.first, r.first + r.second);
  FILE* maps = std::fopen("/proc/self/maps", "r");  // glibc's malloc: no call into the pool
  if (!maps) return -1;
  long missing = 0;
  unsigned long lo, hi;
  while (std::fscanf(maps, "%lx-%lx%*[^\n]", &lo, &hi) == 2) {
    char *s = reinterpret_cast<char*>(lo), *e = reinterpret_cast<char*>(hi);
    auto h = held.upper_bound(s);  // the first held range that ends after s
    if (h != held.begin() && std::prev(h)->second > s) --h;
    if (h == held.end()) continue;
    char* first = std::max(s, h->first);  // the mapping's start, or where the pool's memory begins
    if (first < e && !cuts.count(first)) ++missing;
  }
  std::fclose(maps);
  return missing;
}
}
