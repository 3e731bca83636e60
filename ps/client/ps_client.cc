#include "ps/client/ps_client.h"

#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"
#include "ps/client/transport.h"
#include "ps/common/grpc_status.h"

// Connecting to the shards, and the control calls over gRPC (specs, tensor
// lists, shard info). The data-plane calls are in requests.cc, the I/O thread
// in transport.cc.

namespace tessera {
namespace {

// Longest single GetShardInfo attempt while connecting.
constexpr absl::Duration kConnectAttempt = absl::Seconds(5);

// The host of a gRPC target "host:port" (or "dns:///host:port").
std::string HostOf(const std::string& target) {
  std::string address = target;
  for (const char* scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(address, scheme)) {
      address = address.substr(strlen(scheme));
    }
  }
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace

using client_internal::GrpcDeadline;
using client_internal::kTick;
using client_internal::Pretty;
using client_internal::WithShard;

absl::StatusOr<std::unique_ptr<PsClient>> PsClient::Connect(
    PsClientOptions options) {
  if (options.shard_addresses.empty()) {
    return absl::InvalidArgumentError("PsClient needs shard addresses");
  }
  const int n = static_cast<int>(options.shard_addresses.size());
  std::vector<ShardEndpoint> shards(n);
  std::vector<v1::ShardInfo> infos(n);
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  for (int i = 0; i < n; ++i) {
    ShardEndpoint& shard = shards[i];
    shard.grpc_address = options.shard_addresses[i];
    shard.stub = v1::ParameterServer::NewStub(NewChannel(shard.grpc_address));
    absl::Duration backoff = options.initial_backoff;
    absl::Status last;
    while (true) {
      grpc::ClientContext context;
      context.set_deadline(GrpcDeadline(
          std::max(absl::Milliseconds(1),
                   std::min(kConnectAttempt, deadline - absl::Now()))));
      last = FromGrpcStatus(shard.stub->GetShardInfo(
          &context, v1::GetShardInfoRequest(), &infos[i]));
      if (last.ok()) break;
      if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) {
        return WithShard(i, shard.grpc_address, last);
      }
      if (absl::Now() + backoff >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "shard ", i, " at ", shard.grpc_address,
            " did not answer GetShardInfo within ",
            Pretty(options.connect_timeout), ": ", last.message()));
      }
      absl::SleepFor(backoff);  // Retry backoff, not a readiness wait.
      backoff = std::min(backoff * 2, options.max_backoff);
    }
    const v1::ShardInfo& info = infos[i];
    if (info.shard_index() != i) {
      return absl::FailedPreconditionError(
          absl::StrCat(shard.grpc_address, " is shard ", info.shard_index(),
                       ", but it is listed as shard ", i));
    }
    if (!google::protobuf::util::MessageDifferencer::Equals(
            info.placement(), infos[0].placement())) {
      return absl::FailedPreconditionError(
          absl::StrCat("shards disagree on the placement: shard 0 has {",
                       infos[0].placement().ShortDebugString(), "}, shard ", i,
                       " has {", info.placement().ShortDebugString(), "}"));
    }
    if (info.placement().num_shards() != n) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", i, " at ", shard.grpc_address,
                       " belongs to a job of ", info.placement().num_shards(),
                       " shards; the client was given ", n, " addresses"));
    }
    if (info.data_port() <= 0 || info.data_port() > 65535) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", i, " at ", shard.grpc_address,
                       " reports no data port (", info.data_port(), ")"));
    }
    std::string host = HostOf(shard.grpc_address);
    shard.data_address = absl::StrCat(host, ":", info.data_port());
    if (host.find(':') != std::string::npos && host[0] != '[') {
      host = absl::StrCat("[", host, "]");
    }
    shard.data_endpoint = absl::StrCat("tcp://", host, ":", info.data_port());
    shard.max_message_bytes = info.max_message_bytes();
  }
  std::vector<Transport::LinkInfo> links;
  for (const ShardEndpoint& shard : shards) {
    links.push_back({shard.data_address, shard.data_endpoint});
  }
  const v1::PlacementConfig placement = infos[0].placement();
  std::unique_ptr<PsClient> client(
      new PsClient(std::move(options), placement, std::move(shards)));
  metrics::Registry* registry = client->options_.registry;
  if (registry == nullptr) {
    client->own_registry_ = std::make_unique<metrics::Registry>();
    registry = client->own_registry_.get();
  }
  auto transport =
      Transport::Create(client->options_, std::move(links), registry);
  if (!transport.ok()) return transport.status();
  client->transport_ = *std::move(transport);
  return client;
}

PsClient::PsClient(PsClientOptions options, v1::PlacementConfig placement,
                   std::vector<ShardEndpoint> shards)
    : options_(std::move(options)),
      placement_(std::move(placement)),
      shards_(std::move(shards)) {}

PsClient::~PsClient() { transport_.reset(); }

const std::string& PsClient::grpc_address(int shard) const {
  return shards_.at(shard).grpc_address;
}

const std::string& PsClient::data_address(int shard) const {
  return shards_.at(shard).data_address;
}

absl::Duration PsClient::DeadlineOf(const CallOptions& options) const {
  return options.deadline > absl::ZeroDuration() ? options.deadline
                                                 : options_.default_deadline;
}

// --- Specs and control calls ------------------------------------------------

absl::Status PsClient::RegisterSpecs(absl::Span<const v1::TensorSpec> specs) {
  std::vector<std::shared_ptr<const TensorInfo>> infos;
  for (const v1::TensorSpec& spec : specs) {
    absl::Status valid = ValidateTensorSpec(spec);
    if (!valid.ok()) return valid;
    auto info = std::make_shared<TensorInfo>();
    info->spec = spec;
    info->embedding = spec.kind() == v1::TensorSpec::EMBEDDING;
    info->row_size = RowSize(spec);
    if (!info->embedding) {
      info->num_rows = NumRows(spec);
      info->parts = PlaceDense(spec, placement_);
    }
    infos.push_back(std::move(info));
  }
  absl::MutexLock lock(&specs_mu_);
  for (const auto& info : infos) {
    auto it = specs_.find(info->spec.name());
    if (it != specs_.end() &&
        !google::protobuf::util::MessageDifferencer::Equals(it->second->spec,
                                                            info->spec)) {
      return absl::AlreadyExistsError(
          absl::StrCat("tensor ", info->spec.name(), " is already known as {",
                       it->second->spec.ShortDebugString(), "}, not {",
                       info->spec.ShortDebugString(), "}"));
    }
  }
  for (auto& info : infos) specs_[info->spec.name()] = std::move(info);
  return absl::OkStatus();
}

absl::Status PsClient::CreateTensors(absl::Span<const v1::TensorSpec> specs) {
  for (const v1::TensorSpec& spec : specs) {
    absl::Status valid = ValidateTensorSpec(spec);
    if (!valid.ok()) return valid;
  }
  v1::CreateTensorsRequest request;
  for (const v1::TensorSpec& spec : specs) *request.add_specs() = spec;
  for (int i = 0; i < num_shards(); ++i) {
    grpc::ClientContext context;
    context.set_deadline(GrpcDeadline(options_.default_deadline));
    v1::CreateTensorsResponse response;
    absl::Status created = FromGrpcStatus(
        shards_[i].stub->CreateTensors(&context, request, &response));
    if (!created.ok()) return WithShard(i, shards_[i].grpc_address, created);
  }
  return RegisterSpecs(specs);
}

absl::Status PsClient::InitializeDense(absl::string_view tensor,
                                       absl::Span<const float> values,
                                       int* applied_parts) {
  if (applied_parts != nullptr) *applied_parts = 0;
  const std::string name(tensor);
  auto found = Find(name);
  if (!found.ok()) return found.status();
  const TensorInfo& t = **found;
  if (t.embedding) {
    return absl::InvalidArgumentError(
        absl::StrCat(name,
                     " is an embedding table: its rows come from its "
                     "initializer and cannot be set"));
  }
  // num_rows x row_size is the spec's element count, bounded by validation.
  const int64_t floats = t.num_rows * t.row_size;
  if (static_cast<int64_t>(values.size()) != floats) {
    return absl::InvalidArgumentError(
        absl::StrCat("initial values for ", name, " have ", values.size(),
                     " floats; the tensor has ", floats));
  }
  // Build and size-check every part's request before sending any.
  std::vector<v1::InitializeTensorRequest> requests;
  for (const PartPlacement& part : t.parts) {
    v1::InitializeTensorRequest request;
    request.set_tensor_name(name);
    request.set_row_begin(part.row_begin);
    const float* begin = values.data() + part.row_begin * t.row_size;
    const int64_t n = (part.row_end - part.row_begin) * t.row_size;
    request.set_values(reinterpret_cast<const char*>(begin), n * sizeof(float));
    const int64_t limit = shards_[part.shard].max_message_bytes;
    const int64_t bytes = request.ByteSizeLong();
    if (limit > 0 && bytes > limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "initial values of ", name, " rows [", part.row_begin, ", ",
          part.row_end, ") are ", bytes, " bytes, more than shard ", part.shard,
          " at ", shards_[part.shard].grpc_address,
          " accepts (--max_message_bytes=", limit, ")"));
    }
    requests.push_back(std::move(request));
  }
  for (size_t k = 0; k < requests.size(); ++k) {
    const int shard = t.parts[k].shard;
    const absl::Time deadline = absl::Now() + options_.default_deadline;
    absl::Duration backoff = options_.initial_backoff;
    while (true) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(deadline));
      v1::InitializeTensorResponse response;
      absl::Status status =
          FromGrpcStatus(shards_[shard].stub->InitializeTensor(
              &context, requests[k], &response));
      if (status.ok()) {
        if (response.applied() && applied_parts != nullptr) ++*applied_parts;
        break;
      }
      if (!absl::IsUnavailable(status) || absl::Now() + backoff >= deadline) {
        return WithShard(shard, shards_[shard].grpc_address, status);
      }
      absl::SleepFor(backoff);  // Retry backoff, not a readiness wait.
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::TensorPartInfo>> PsClient::ListTensors(
    int shard) {
  if (shard < 0 || shard >= num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  grpc::ClientContext context;
  context.set_deadline(GrpcDeadline(options_.default_deadline));
  v1::ListTensorsResponse response;
  absl::Status listed = FromGrpcStatus(shards_[shard].stub->ListTensors(
      &context, v1::ListTensorsRequest(), &response));
  if (!listed.ok())
    return WithShard(shard, shards_[shard].grpc_address, listed);
  return std::vector<v1::TensorPartInfo>(response.parts().begin(),
                                         response.parts().end());
}

absl::StatusOr<v1::ShardInfo> PsClient::GetShardInfo(int shard) {
  if (shard < 0 || shard >= num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  grpc::ClientContext context;
  context.set_deadline(GrpcDeadline(options_.default_deadline));
  v1::ShardInfo info;
  absl::Status got = FromGrpcStatus(shards_[shard].stub->GetShardInfo(
      &context, v1::GetShardInfoRequest(), &info));
  if (!got.ok()) return WithShard(shard, shards_[shard].grpc_address, got);
  return info;
}

absl::Status PsClient::LoadSpecs() {
  absl::flat_hash_map<std::string, std::pair<int, v1::TensorSpec>> found;
  for (int i = 0; i < num_shards(); ++i) {
    auto parts = ListTensors(i);
    if (!parts.ok()) return parts.status();
    for (const v1::TensorPartInfo& part : *parts) {
      auto [it, inserted] =
          found.try_emplace(part.spec().name(), i, part.spec());
      if (!inserted && !google::protobuf::util::MessageDifferencer::Equals(
                           it->second.second, part.spec())) {
        return absl::FailedPreconditionError(
            absl::StrCat("shards ", it->second.first, " and ", i,
                         " disagree on the spec of ", part.spec().name()));
      }
    }
  }
  std::vector<v1::TensorSpec> specs;
  for (auto& [name, spec] : found) specs.push_back(std::move(spec.second));
  return RegisterSpecs(specs);
}

absl::StatusOr<v1::TensorSpec> PsClient::GetSpec(
    const std::string& tensor) const {
  auto info = Find(tensor);
  if (!info.ok()) return info.status();
  return (*info)->spec;
}

absl::StatusOr<std::shared_ptr<const PsClient::TensorInfo>> PsClient::Find(
    const std::string& tensor) const {
  absl::ReaderMutexLock lock(&specs_mu_);
  auto it = specs_.find(tensor);
  if (it == specs_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "tensor ", tensor,
        " is unknown to this client: CreateTensors, RegisterSpecs or "
        "LoadSpecs first"));
  }
  return it->second;
}

}  // namespace tessera
