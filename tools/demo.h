#ifndef TESSERA_TOOLS_DEMO_H_
#define TESSERA_TOOLS_DEMO_H_

// `tessera demo`: the whole system on this machine. Starts shards and workers
// as child processes on loopback, trains the Fashion-MNIST MLP with a live
// progress line per epoch, evaluates the pulled model on the test set, writes
// it to a file, and stops every child, also on Ctrl-C. With --demo_job, the
// same for a given job file: shard 0 reads it, and instead of the
// Fashion-MNIST evaluation the job's status (with each epoch's test figures,
// as the workers report them) is printed.

namespace tessera {

// `argv0` locates the sibling binaries (tessera-ps, tessera-worker). Returns
// the process exit code.
int RunDemo(const char* argv0);

}  // namespace tessera

#endif  // TESSERA_TOOLS_DEMO_H_
