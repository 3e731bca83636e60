// Debian's civetweb 1.15 is built with USE_STACK_SIZE=102400: it asks for
// 100 KiB stacks for its threads. glibc carves the static TLS of every loaded
// library out of a thread's stack, and a process that links libtorch carries
// ~106 KiB of it (OpenBLAS 60 KiB, glog 30 KiB, ...), so pthread_create fails
// with EINVAL and the /metrics server cannot start ("Cannot create threads").
//
// civetweb has no run-time option for the stack size, so this definition
// interposes pthread_attr_setstacksize for the process (the executable's
// symbol wins over libc's for every shared library) and raises requests below
// kMinStack to kMinStack. Larger requests pass through unchanged.

#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

namespace {
constexpr size_t kMinStack = 1 << 20;

using SetStackSize = int (*)(pthread_attr_t*, size_t);
}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr,
                                         size_t stacksize) {
  static const SetStackSize real = reinterpret_cast<SetStackSize>(
      dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (real == nullptr) return 0;  // Keep the default (8 MiB) stack.
  return real(attr, stacksize < kMinStack ? kMinStack : stacksize);
}
