#include "tools/model_pull.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ps/client/placement.h"
#include "ps/common/grpc_status.h"
#include "ps/store/initializer.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace tessera {
namespace {

struct Assembly {
  v1::TensorSpec spec;
  std::vector<float> values;
  int64_t filled = 0;
  std::map<uint64_t, std::vector<float>> rows;  // embedding rows by id
  int64_t version = 0;
};

}  // namespace

absl::StatusOr<std::vector<PulledTensor>> PullModel(
    const std::vector<std::string>& shards, absl::Duration timeout) {
  std::map<std::string, Assembly> tensors;
  for (size_t s = 0; s < shards.size(); ++s) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    auto channel = grpc::CreateCustomChannel(
        shards[s], grpc::InsecureChannelCredentials(), args);
    auto stub = v1::ParameterServer::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(timeout));
    auto reader = stub->PullModel(&context, v1::PullModelRequest());
    v1::TensorChunk chunk;
    std::string current;
    while (reader->Read(&chunk)) {
      if (chunk.has_spec()) current = chunk.spec().name();
      if (current.empty()) {
        return absl::DataLossError(absl::StrCat(
            "shard ", s, " at ", shards[s], " sent a chunk before its spec"));
      }
      Assembly& a = tensors[current];
      if (chunk.has_spec()) a.spec = chunk.spec();
      a.version = std::max(a.version, chunk.version());
      const size_t n = chunk.values().size() / sizeof(float);
      const float* v = reinterpret_cast<const float*>(chunk.values().data());
      if (a.spec.kind() == v1::TensorSpec::EMBEDDING) {
        const int64_t dim = a.spec.shape(1);
        if (static_cast<int64_t>(n) != chunk.row_ids_size() * dim) {
          return absl::DataLossError(absl::StrCat(
              "shard ", s, " sent a malformed chunk of ", current));
        }
        for (int i = 0; i < chunk.row_ids_size(); ++i) {
          a.rows[chunk.row_ids(i)].assign(v + i * dim, v + (i + 1) * dim);
        }
        continue;
      }
      if (a.values.empty()) a.values.resize(NumElements(a.spec));
      const int64_t at =
          chunk.part_row_begin() * RowSize(a.spec) + chunk.offset();
      if (at < 0 || at + static_cast<int64_t>(n) >
                        static_cast<int64_t>(a.values.size())) {
        return absl::DataLossError(absl::StrCat("shard ", s, " sent values of ",
                                                current, " outside its shape"));
      }
      std::memcpy(a.values.data() + at, v, n * sizeof(float));
      a.filled += n;
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      absl::Status error = FromGrpcStatus(status);
      return absl::Status(error.code(),
                          absl::StrCat("pulling from shard ", s, " at ",
                                       shards[s], ": ", error.message()));
    }
  }

  std::vector<PulledTensor> out;
  for (auto& [name, a] : tensors) {
    PulledTensor t;
    t.name = name;
    t.version = a.version;
    if (a.spec.kind() != v1::TensorSpec::EMBEDDING) {
      if (a.filled != NumElements(a.spec)) {
        return absl::DataLossError(absl::StrCat(
            "tensor ", name, " is incomplete: got ", a.filled, " of ",
            NumElements(a.spec), " values; is a shard missing from --shards?"));
      }
      t.shape.assign(a.spec.shape().begin(), a.spec.shape().end());
      t.values = std::move(a.values);
      out.push_back(std::move(t));
      continue;
    }
    const int64_t dim = a.spec.shape(1);
    const int64_t rows = a.spec.shape(0);
    if (rows > 0) {
      t.shape = {rows, dim};
      t.values.resize(rows * dim);
      InitializeRows(a.spec, 0, absl::MakeSpan(t.values));
      for (const auto& [id, values] : a.rows) {
        std::copy(values.begin(), values.end(), t.values.begin() + id * dim);
      }
      out.push_back(std::move(t));
      continue;
    }
    PulledTensor ids;
    ids.name = name + ".ids";
    ids.integer = true;
    ids.shape = {static_cast<int64_t>(a.rows.size())};
    t.shape = {static_cast<int64_t>(a.rows.size()), dim};
    for (const auto& [id, values] : a.rows) {
      ids.int_values.push_back(static_cast<int64_t>(id));
      t.values.insert(t.values.end(), values.begin(), values.end());
    }
    out.push_back(std::move(t));
    out.push_back(std::move(ids));
  }
  return out;
}

}  // namespace tessera
