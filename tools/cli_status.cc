#include "tools/cli_status.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"
#include "ps/client/coordinator_client.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace tessera {
namespace {

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
}

std::string ShardLine(size_t index, const std::string& address,
                      absl::Duration timeout) {
  auto channel = NewChannel(address);
  grpc::ClientContext health_context;
  SetDeadline(&health_context, timeout);
  grpc::health::v1::HealthCheckResponse health;
  grpc::Status h = grpc::health::v1::Health::NewStub(channel)->Check(
      &health_context, grpc::health::v1::HealthCheckRequest(), &health);
  if (!h.ok()) {
    return absl::StrFormat("  shard %d  %-22s UNREACHABLE (%s)\n", index,
                           address, h.error_message());
  }
  grpc::ClientContext info_context;
  SetDeadline(&info_context, timeout);
  v1::ShardInfo info;
  grpc::Status i = v1::ParameterServer::NewStub(channel)->GetShardInfo(
      &info_context, v1::GetShardInfoRequest(), &info);
  const std::string serving =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
          health.status());
  if (!i.ok()) {
    return absl::StrFormat("  shard %d  %-22s %s\n", index, address, serving);
  }
  const double age =
      info.last_flush_unix_ms() == 0
          ? -1
          : (absl::ToUnixMillis(absl::Now()) - info.last_flush_unix_ms()) /
                1000.0;
  return absl::StrFormat(
      "  shard %d  %-22s %-11s %4d tensors %10.1f MiB  last flush %.1fs ago\n",
      info.shard_index(), address, serving, info.num_tensors(),
      info.parameter_bytes() / 1048576.0, age);
}

}  // namespace

absl::StatusOr<v1::JobStatus> FetchJobStatus(const std::string& coordinator,
                                             absl::Duration timeout) {
  CoordinatorClientOptions options;
  options.address = coordinator;
  return CoordinatorClient(options).GetStatus(timeout);
}

absl::StatusOr<std::string> FormatStatus(const std::string& coordinator,
                                         const std::vector<std::string>& shards,
                                         absl::Duration timeout) {
  auto job = FetchJobStatus(coordinator, timeout);
  if (!job.ok()) return job.status();
  std::string out = FormatJobStatus(*job);
  if (!shards.empty()) {
    absl::StrAppendFormat(&out, "shards: %d\n", shards.size());
    for (size_t i = 0; i < shards.size(); ++i) {
      out += ShardLine(i, shards[i], timeout);
    }
  }
  return out;
}

std::string FormatJobStatus(const v1::JobStatus& status) {
  const v1::JobStatus* job = &status;
  std::string out = absl::StrFormat(
      "job %s: %s, epoch %d of %d\n", job->job_name(),
      !job->failed().empty() ? "FAILED"
                             : (job->finished() ? "FINISHED" : "training"),
      std::min(job->epoch() + 1, job->epochs()), job->epochs());
  if (!job->failed().empty()) {
    absl::StrAppendFormat(&out, "FAILED: %s\n", job->failed());
  }
  if (job->bad_lines() > 0) {
    absl::StrAppendFormat(&out, "bad input lines: %d skipped",
                          job->bad_lines());
    if (!job->first_bad_line().empty()) {
      absl::StrAppendFormat(&out, "; first: %s", job->first_bad_line());
    }
    out += "\n";
  }
  absl::StrAppendFormat(&out, "partitions: %d done, %d leased, %d queued\n",
                        job->partitions_done(), job->partitions_leased(),
                        job->partitions_queued());
  for (const auto& e : job->epoch_stats()) {
    if (e.samples() == 0) continue;
    absl::StrAppendFormat(&out,
                          "  epoch %d: %d samples, loss %.4f, train acc "
                          "%.2f%%",
                          e.epoch() + 1, e.samples(),
                          e.loss_sum() / e.samples(),
                          100.0 * e.correct() / e.samples());
    if (e.test_samples() > 0) {
      absl::StrAppendFormat(&out, ", test acc %.2f%%, test loss %.4f",
                            100.0 * e.test_correct() / e.test_samples(),
                            e.test_loss_sum() / e.test_samples());
    }
    if (e.has_test_auc()) {
      absl::StrAppendFormat(&out, ", test AUC %.4f", e.test_auc());
    }
    out += "\n";
  }
  absl::StrAppendFormat(&out, "workers: %d live\n", job->workers_size());
  const int64_t now = absl::ToUnixMillis(absl::Now());
  for (const auto& w : job->workers()) {
    absl::StrAppendFormat(&out, "  %-24s clock %6d  %s  seen %.1fs ago\n",
                          w.worker_id(), w.clock(),
                          w.partition() >= 0
                              ? absl::StrCat("partition ", w.partition())
                              : std::string("idle        "),
                          (now - w.last_seen_unix_ms()) / 1000.0);
  }
  return out;
}

}  // namespace tessera
