#ifndef TESSERA_WORKER_TRAINER_H_
#define TESSERA_WORKER_TRAINER_H_

// One worker's life in a job: join, register or check the model, then lease
// partitions and train on them until the job is finished or the worker is
// told to stop (SIGTERM: the current lease is handed back, the worker
// leaves, Run() returns OK).
//
// Each step pulls the parameters it needs, computes gradients with libtorch
// and pushes them without waiting. The pull for step t+1 is issued while
// step t computes (so a step sees its own update one step late), and at most
// `max_pushes_in_flight` steps of pushes are outstanding. Under SSP the
// coordinator holds a worker that is more than `staleness` steps ahead of the
// slowest one before it pulls; the wait is logged and measured.
//
// Thread-compatible: Run() is called once; RequestStop() may be called from
// any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "ps/common/metrics/metrics.h"
#include "tessera/v1/tensor.pb.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {

struct TrainerOptions {
  std::string worker_id;
  std::string coordinator;          // gRPC address of shard 0
  std::vector<std::string> shards;  // gRPC addresses, in shard order
  int threads = 1;                  // libtorch intra-op threads
  int max_pushes_in_flight = 2;     // steps whose pushes may be pending
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration call_deadline = absl::Seconds(10);
  // How long to keep retrying the coordinator and shards at start-up.
  absl::Duration connect_timeout = absl::Minutes(5);
  metrics::Registry* registry = nullptr;  // Not owned; required.
  // Testing only (fault injection): when > 0, every n-th step pushes
  // gradients made of NaN instead of the real ones. The shards refuse them.
  int debug_nan_every_n_steps = 0;
};

class Trainer {
 public:
  explicit Trainer(TrainerOptions options);
  ~Trainer();

  // Trains until the job is finished (OK) or RequestStop() (OK, after
  // handing back the lease and leaving). Errors that retrying cannot fix
  // (a model that differs from the job's registered one, an unreadable
  // dataset) are returned.
  absl::Status Run();

  // Asks Run() to stop after the current step. Async-signal-unsafe; call it
  // from a normal thread.
  void RequestStop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_TRAINER_H_
