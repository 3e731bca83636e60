#ifndef TESSERA_PS_COMMON_ALLOCATOR_H_
#define TESSERA_PS_COMMON_ALLOCATOR_H_

// Process-wide malloc settings for processes that move large messages (the
// shard, workers, benchmarks). Call once from main(), before starting threads;
// libraries never call it (STYLE.md: configuration comes in).
//
// Why: ZeroMQ allocates every received message with malloc. With glibc's
// defaults, freeing several large blocks at once makes malloc give the memory
// back to the kernel, and the next messages page-fault on every 4 KiB page as
// the kernel copies into them. On a VM, where page faults are expensive, that
// costs more CPU than the transfer itself (measured: 1 MiB messages with 8 in
// flight used ~3x the CPU per byte). These settings keep freed memory for
// reuse instead.
//
// Caveat: the process's resident memory then stays at its high-water mark
// (up to `keep_bytes` above what is in use).

#include <cstdint>

namespace tessera {

// Blocks up to 32 MiB (glibc's limit) come from the heap rather than from
// their own mmap, and up to `keep_bytes` of freed heap is kept rather than
// returned to the kernel. Returns false if glibc refused a setting.
bool KeepFreedMessageMemory(int64_t keep_bytes = int64_t{1} << 30);

}  // namespace tessera

#endif  // TESSERA_PS_COMMON_ALLOCATOR_H_
